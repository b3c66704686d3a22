"""Dataset converters to COCO JSON (``detcore convert``).

- :func:`images2coco`: a folder of images and a class list -> a test-set JSON without annotations
  (to run ``detcore test``/``infer`` on unlabelled data with CocoDataset);
- :func:`cityscapes2coco`: Cityscapes' instance-id maps -> ``instancesonly_filtered_gtFine_<split>.json``;
- :func:`voc2coco`: a VOC devkit (``VOC2007``/``VOC2012`` with ``ImageSets/Main/<split>.txt``,
  ``Annotations/*.xml``) -> one ``voc<year>_<split>.json`` per split found. Boxes are VOC's 1-based
  inclusive pixels made 0-based (``x - 1``), width ``xmax - xmin + 1``; ``difficult`` objects become
  ``iscrowd = 1`` (ignored by the COCO evaluation and by CocoDataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from detcore.errors import DetcoreError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_class_list(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines and surrounding spaces ignored); duplicates refused."""
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DetcoreError(f"{path}: cannot read the class list ({exc.strerror})") from None
    if not names:
        raise DetcoreError(f"{path}: the class list is empty")
    seen: set[str] = set()
    for number, name in enumerate(names, 1):
        if name in seen:
            raise DetcoreError(f"{path}: class {name!r} is listed twice (second time at entry {number})")
        seen.add(name)
    return names


def _categories(names: Sequence[str]) -> list[dict]:
    return [{"id": i, "name": name, "supercategory": "none"} for i, name in enumerate(names, 1)]


def images2coco(
    img_dir: str | Path, classes: Sequence[str], out_file: str | Path, exclude_extensions: Sequence[str] = ()
) -> dict:
    """Write a COCO JSON listing every image under ``img_dir`` (recursively, sorted; ``file_name``
    relative to ``img_dir``) with no annotations; an unreadable image is an error naming it."""
    from PIL import Image, UnidentifiedImageError

    root = Path(img_dir)
    if not root.is_dir():
        raise DetcoreError(f"{img_dir}: not a folder of images")
    excluded = {("." + e.lower().lstrip(".")) for e in exclude_extensions}
    wanted = set(IMAGE_EXTENSIONS) - excluded
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in wanted)
    if not files:
        raise DetcoreError(f"{img_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) left to list")
    images = []
    for index, path in enumerate(files):
        try:
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
        except (OSError, UnidentifiedImageError) as exc:
            raise DetcoreError(f"{path}: not a readable image ({exc})") from None
        images.append({"id": index, "file_name": path.relative_to(root).as_posix(), "width": width,
                       "height": height})  # fmt: skip
    data = {"images": images, "annotations": [], "categories": _categories(classes)}
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    return data


def voc2coco(
    devkit: str | Path,
    out_dir: str | Path,
    splits: Sequence[str] = ("train", "val", "trainval", "test"),
    classes: Sequence[str] | None = None,
) -> list[Path]:
    """Convert every ``VOC<year>/ImageSets/Main/<split>.txt`` under ``devkit``; returns the files written."""
    from detcore.data.datasets.voc import VOCDataset, XMLDataset

    names = list(classes or VOCDataset.CLASSES)
    root = Path(devkit)
    years = sorted(p for p in root.glob("VOC20*") if (p / "ImageSets" / "Main").is_dir())
    if not years:
        raise DetcoreError(f"{devkit}: no VOC<year>/ImageSets/Main folder (is this a VOCdevkit?)")
    written = []
    for year_dir in years:
        for split in splits:
            split_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
            if not split_file.is_file():
                continue
            dataset = XMLDataset(str(split_file), img_prefix=str(year_dir), classes=names, test_mode=True,
                                 filter_empty_gt=False)  # fmt: skip
            images, annotations = [], []
            for index, info in enumerate(dataset.data_infos):
                images.append({"id": index, "file_name": info["filename"], "width": info["width"],
                               "height": info["height"], "voc_id": info["id"]})  # fmt: skip
                ann = dataset.get_ann_info(index)
                for boxes, labels, crowd in ((ann["bboxes"], ann["labels"], 0),
                                             (ann["bboxes_ignore"], ann["labels_ignore"], 1)):  # fmt: skip
                    for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
                        w, h = x2 - x1 + 1, y2 - y1 + 1
                        annotations.append({
                            "id": len(annotations) + 1, "image_id": index, "category_id": int(label) + 1,
                            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": crowd,
                            "segmentation": [[x1, y1, x1 + w, y1, x1 + w, y1 + h, x1, y1 + h]],
                        })  # fmt: skip
            bad = dataset.bad_data_summary()
            if any(bad.values()):
                print(f"{split_file}: skipped bad annotations: {bad}")
            out = Path(out_dir) / f"{year_dir.name.lower().replace('voc20', 'voc')}_{split}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"images": images, "annotations": annotations,
                                       "categories": _categories(names)}))  # fmt: skip
            written.append(out)
    if not written:
        raise DetcoreError(f"{devkit}: none of the splits {list(splits)} has an ImageSets/Main/<split>.txt")
    return written


#: Cityscapes' instance classes (label id -> name), in the order of the reference's CityscapesDataset
CITYSCAPES_CLASSES: dict[int, str] = {
    24: "person", 25: "rider", 26: "car", 27: "truck",
    28: "bus", 31: "train", 32: "motorcycle", 33: "bicycle",
}  # fmt: skip


def _mask_polygons(mask: Any) -> list[list[float]]:
    import cv2

    contours, _ = cv2.findContours(mask.astype("uint8"), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def cityscapes2coco(
    root: str | Path, out_dir: str | Path, splits: Sequence[str] = ("train", "val", "test")
) -> list[Path]:
    """Cityscapes (``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine/<split>/<city>/
    *_gtFine_instanceIds.png``) -> ``instancesonly_filtered_gtFine_<split>.json`` per split found.

    Read from the 16-bit instance-id maps (no cityscapesscripts needed): a pixel value ``v >= 1000`` is
    instance ``v % 1000`` of label id ``v // 1000``; a value below 1000 of an instance class is a group
    region of that class, written with ``iscrowd = 1``. Masks become polygons (OpenCV contours); boxes
    and areas come from the masks.
    """
    import cv2
    import numpy as np

    root = Path(root)
    label_to_cat = {label: i for i, label in enumerate(CITYSCAPES_CLASSES, 1)}
    written = []
    for split in splits:
        gt_dir = root / "gtFine" / split
        if not gt_dir.is_dir():
            continue
        images, annotations = [], []
        for ids_path in sorted(gt_dir.glob("*/*_gtFine_instanceIds.png")):
            stem = ids_path.name[: -len("_gtFine_instanceIds.png")]
            image_path = root / "leftImg8bit" / split / ids_path.parent.name / f"{stem}_leftImg8bit.png"
            ids = cv2.imread(str(ids_path), cv2.IMREAD_UNCHANGED)
            if ids is None:
                raise DetcoreError(f"{ids_path}: not a readable instance-id PNG")
            image_id = len(images)
            name = image_path.relative_to(root / "leftImg8bit" / split).as_posix()
            images.append({"id": image_id, "file_name": name, "width": int(ids.shape[1]),
                           "height": int(ids.shape[0]), "seg_file_name": ids_path.name})  # fmt: skip
            for value in np.unique(ids):
                label = int(value) // 1000 if value >= 1000 else int(value)
                if label not in label_to_cat:
                    continue
                mask = ids == value
                ys, xs = np.nonzero(mask)
                x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                polygons = _mask_polygons(mask)
                if not polygons:
                    continue
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": label_to_cat[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(mask.sum()),
                    "iscrowd": int(value < 1000), "segmentation": polygons,
                })  # fmt: skip
        categories = [{"id": i, "name": name, "supercategory": "cityscapes"}
                      for i, name in enumerate(CITYSCAPES_CLASSES.values(), 1)]  # fmt: skip
        out = Path(out_dir) / f"instancesonly_filtered_gtFine_{split}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        written.append(out)
    if not written:
        raise DetcoreError(f"{root}: no gtFine/<split> folder for {list(splits)} (is this Cityscapes?)")
    return written
