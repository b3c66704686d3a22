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
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(ann_file)
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
