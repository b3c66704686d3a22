"""``CocoDataset``: COCO-format annotation JSON read with pycocotools.

- boxes ``[x, y, w, h]`` become ``[x1, y1, x2, y2]``; ``iscrowd = 1`` boxes go to ``bboxes_ignore``;
- ``segmentation`` (polygons, uncompressed or compressed RLE) is kept as ``masks`` for
  ``LoadAnnotations(with_mask = true)``;
- category ids map to contiguous labels in the order of ``CLASSES`` (``cat2label``); ``classes``
  selects a subset by name; annotations of other categories are ignored, unknown ids are bad data;
- ``seg_map``: the image file name with a ``.png`` suffix, read under ``seg_prefix``.
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO

from detcore.data.datasets.custom import CustomDataset


class CocoDataset(CustomDataset):
    """COCO detection / instance segmentation (see the module docstring). ``CLASSES`` default to
    the annotation file's categories in id order."""

    CLASSES = None

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[Mapping[str, Any] | Any] | None = None,
        img_prefix: str = "",
        classes: Sequence[str] | str | None = None,
        test_mode: bool = False,
        filter_empty_gt: bool = True,
        min_size: int | None = None,
        strict: bool = False,
        seg_prefix: str | None = None,
        proposal_file: str | None = None,
        data_root: str | None = None,
        seg_suffix: str = ".png",
    ) -> None:
        self.seg_suffix = seg_suffix
        super().__init__(
            ann_file,
            pipeline,
            classes=classes,
            data_root=data_root,
            img_prefix=img_prefix,
            seg_prefix=seg_prefix,
            proposal_file=proposal_file,
            test_mode=test_mode,
            filter_empty_gt=filter_empty_gt,
            min_size=min_size,
            strict=strict,
        )

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        with open(ann_file) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ValueError("not a COCO annotation file: expected an object with an 'images' array")
        data = dict(data, images=self._checked_images(data["images"]))
        data["annotations"] = self._checked_annotations(data.get("annotations") or [], data["images"])
        data.setdefault("categories", [])
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        name2id = {c["name"]: c["id"] for c in cats}
        self.all_cat_ids = set(name2id.values())
        if self.CLASSES is None:
            self.CLASSES = tuple(c["name"] for c in cats)
        unknown = [n for n in self.CLASSES if n not in name2id]
        if unknown:
            raise ValueError(
                f"{ann_file}: classes {unknown} are not categories of the file; categories: {sorted(name2id)}"
            )
        self.cat_ids = [name2id[n] for n in self.CLASSES]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        infos = []
        for img_id in sorted(self.coco.getImgIds()):
            info = dict(self.coco.loadImgs([img_id])[0])
            info["filename"] = info["file_name"]
            infos.append(info)
        return infos

    def _checked_images(self, images: list[Any]) -> list[dict[str, Any]]:
        """The image entries with an id and a file name; a repeated id is reported, and the later
        entry kept under a new id (pycocotools would silently keep only one of them)."""
        good = []
        for i, img in enumerate(images):
            if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
                img_id = img.get("id", f"#{i}") if isinstance(img, dict) else f"#{i}"
                detail = f"image entry {i} needs 'id' and 'file_name'"
                self.bad_data.record("bad_annotation", img_id, "?", detail)
                continue
            good.append(dict(img))
        seen: dict[Any, str] = {}
        numeric = [img["id"] for img in good if isinstance(img["id"], int)]
        next_id = max(numeric, default=0) + 1
        for img in good:
            first = seen.get(img["id"])
            if first is None:
                seen[img["id"]] = img["file_name"]
                continue
            new_id, next_id = next_id, next_id + 1
            self.bad_data.record(
                "duplicate_image_id", img["id"], img["file_name"],
                f"id also used by {first}; kept as image id {new_id} (the id's annotations stay with "
                f"{first})",
            )
            img["original_id"], img["id"] = img["id"], new_id
            seen[new_id] = img["file_name"]
        return good

    def _checked_annotations(self, anns: list[Any], images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Annotations that are tables of an existing image with a bbox of 4 finite numbers (the
        metric's ground truth reads them too); the others are reported."""
        files = {img["id"]: img["file_name"] for img in images if "original_id" not in img}
        out = []
        for i, ann in enumerate(anns):
            if not isinstance(ann, dict):
                self.bad_data.record("bad_annotation", "?", "?", f"annotation {i} is not a table")
                continue
            box = ann.get("bbox")
            if ann.get("image_id") in files and not _four_numbers(box):
                self.bad_data.record(
                    "bad_annotation", ann["image_id"], files[ann["image_id"]],
                    f"annotation {ann.get('id', i)}: bbox {box!r} is not 4 numbers",
                )
                continue
            if ann.get("image_id") in files and not np.all(np.isfinite(box)):
                self.bad_data.record("nan_box", ann["image_id"], files[ann["image_id"]], f"box {box!r}")
                continue
            if ann.get("image_id") not in files:
                self.bad_data.record(
                    "orphan_annotation", ann.get("image_id"), "?",
                    f"annotation {ann.get('id', i)} names image id {ann.get('image_id')!r}, which is not "
                    "an image of the file",
                )
                continue
            out.append(ann)
        return out

    def parse_ann_info(self, idx: int) -> dict[str, Any]:
        info = self.data_infos[idx]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[info["id"]]))
        bboxes, labels, ignore, masks = [], [], [], []
        for ann in anns:
            if ann.get("ignore", False):
                continue
            cat = ann.get("category_id")
            if cat not in self.all_cat_ids:
                self.bad_data.record(
                    "unknown_category",
                    info["id"],
                    info["filename"],
                    f"annotation {ann.get('id')} has category id {cat}",
                )
                continue
            if cat not in self.cat2label:
                continue  # a category outside the selected `classes`
            if "area" in ann and not ann["area"] > 0 and not ann.get("iscrowd", 0):
                self.bad_data.record(
                    "bad_annotation",
                    info["id"],
                    info["filename"],
                    f"annotation {ann.get('id')} has area {ann['area']}",
                )
                continue
            box = self.check_box(ann.get("bbox"), info, xywh=True)
            if box is None:
                continue
            if ann.get("iscrowd", 0):
                ignore.append(box)
            else:
                bboxes.append(box)
                labels.append(self.cat2label[cat])
                segm = ann.get("segmentation")
                if not segm:
                    x1, y1, x2, y2 = box
                    segm = [[x1, y1, x2, y1, x2, y2, x1, y2]]
                masks.append(segm)
        name = info["filename"]
        return {
            "bboxes": np.asarray(bboxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "bboxes_ignore": np.asarray(ignore, dtype=np.float32).reshape(-1, 4),
            "masks": masks,
            "seg_map": name.rsplit(".", 1)[0] + self.seg_suffix,
        }

    def get_cat_ids(self, idx: int) -> list[int]:
        return self.get_ann_info(idx)["labels"].tolist()


def _four_numbers(box: Any) -> bool:
    return (
        isinstance(box, (list, tuple))
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
    )
