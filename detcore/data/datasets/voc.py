"""Pascal VOC: an image-id list file plus ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg`` under
``img_prefix`` (e.g. ``VOCdevkit/VOC2007/``).

As the reference, box coordinates are read as integers and shifted by -1 (VOC is 1-based), objects
marked ``difficult`` (or smaller than ``min_size``) go to ``bboxes_ignore``, and names outside
``CLASSES`` are skipped. Evaluate with ``VOCMetric`` (legacy ``+1`` box areas).
"""

from __future__ import annotations

import os.path as osp
import xml.etree.ElementTree as ET
from typing import Any, Mapping, Sequence

import numpy as np

from detcore.data.datasets.custom import CustomDataset


class XMLDataset(CustomDataset):
    """VOC-style XML annotations (``CLASSES`` from the config's ``classes``)."""

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
        data_root: str | None = None,
        img_subdir: str = "JPEGImages",
        ann_subdir: str = "Annotations",
        seg_prefix: str | None = None,
        proposal_file: str | None = None,
    ) -> None:
        self.img_subdir = img_subdir
        self.ann_subdir = ann_subdir
        self.voc_min_size = min_size
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
            min_size=None,
            strict=strict,
        )

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        if self.CLASSES is None:
            raise ValueError(f"{type(self).__name__}: set `classes` in the dataset config")
        self.cat2label = {name: i for i, name in enumerate(self.CLASSES)}
        with open(ann_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        infos = []
        for img_id in ids:
            xml_path = osp.join(self.img_prefix, self.ann_subdir, f"{img_id}.xml")
            filename = osp.join(self.img_subdir, f"{img_id}.jpg")
            try:
                root = ET.parse(xml_path).getroot()
            except (OSError, ET.ParseError) as exc:
                self.bad_data.record("bad_annotation", img_id, xml_path, f"cannot read XML: {exc}")
                continue
            size = root.find("size")
            width = int(size.find("width").text) if size is not None else 0
            height = int(size.find("height").text) if size is not None else 0
            infos.append({"id": img_id, "filename": filename, "width": width, "height": height, "_xml": root})
        return infos

    def parse_ann_info(self, idx: int) -> dict[str, Any]:
        info = self.data_infos[idx]
        bboxes, labels, ign, ign_labels = [], [], [], []
        min_size = self.voc_min_size
        for obj in info["_xml"].findall("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in self.cat2label:
                continue
            difficult = int(obj.findtext("difficult") or 0)
            bnd = obj.find("bndbox")
            try:
                raw = [float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError, AttributeError):
                self.bad_data.record(
                    "bad_annotation", info["id"], info["filename"], f"object '{name}' without a box"
                )
                continue
            if not np.all(np.isfinite(raw)):
                self.bad_data.record("nan_box", info["id"], info["filename"], f"object '{name}' box {raw}")
                continue
            box = [int(v) for v in raw]
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                self.bad_data.record(
                    "bad_box_size", info["id"], info["filename"], f"object '{name}' box {box}"
                )
                continue
            small = bool(min_size) and (box[2] - box[0] < min_size or box[3] - box[1] < min_size)
            if difficult or small:
                ign.append(box)
                ign_labels.append(self.cat2label[name])
            else:
                bboxes.append(box)
                labels.append(self.cat2label[name])
        return {
            "bboxes": np.asarray(bboxes, dtype=np.float32).reshape(-1, 4) - 1,
            "labels": np.asarray(labels, dtype=np.int64),
            "bboxes_ignore": np.asarray(ign, dtype=np.float32).reshape(-1, 4) - 1,
            "labels_ignore": np.asarray(ign_labels, dtype=np.int64),
        }


class VOCDataset(XMLDataset):
    """Pascal VOC 2007/2012 with its 20 classes."""

    CLASSES = (
        "aeroplane",
        "bicycle",
        "bird",
        "boat",
        "bottle",
        "bus",
        "car",
        "cat",
        "chair",
        "cow",
        "diningtable",
        "dog",
        "horse",
        "motorbike",
        "person",
        "pottedplant",
        "sheep",
        "sofa",
        "train",
        "tvmonitor",
    )
