"""Dataset converters to COCO JSON (``detcore convert``).

- :func:`images2coco`: a folder of images and a class list -> a test-set JSON without annotations
  (to run ``detcore test``/``infer`` on unlabelled data with CocoDataset);
- :func:`voc2coco`: a VOC devkit (``VOC2007``/``VOC2012`` with ``ImageSets/Main/<split>.txt``,
  ``Annotations/*.xml``) -> one ``voc<year>_<split>.json`` per split found. Boxes are VOC's 1-based
  inclusive pixels made 0-based (``x - 1``), width ``xmax - xmin + 1``; ``difficult`` objects become
  ``iscrowd = 1`` (ignored by the COCO evaluation and by CocoDataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

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
