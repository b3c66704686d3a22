"""``CustomDataset``: the middle format, and the base class of every detection dataset.

The middle format is a JSON file holding either a list of images or
``{"classes": [...], "images": [...]}``; each image is::

    {"filename": "a.jpg", "width": 1280, "height": 720,
     "ann": {"bboxes": [[x1, y1, x2, y2], ...],          # float pixels
             "labels": [0, 2, ...],                       # indices into the classes
             "bboxes_ignore": [[...], ...],               # optional
             "labels_ignore": [...],                      # optional
             "seg_map": "a.png"}}                         # optional

(``id`` is optional; the index in the file is used otherwise.) ``classes`` in the config selects a
subset of the file's classes (labels are remapped to the subset's order) or names the classes when
the file has none.

Items: the sample dict after the pipeline. In training, a sample the pipeline drops (``None``,
e.g. a crop without boxes) or whose image cannot be read is replaced by another random image of the
same aspect group (as the reference); in test mode an unreadable image gives ``None`` (collate drops
it). See :mod:`detcore.data.bad_data` for the bad-data policy.
"""

from __future__ import annotations

import json
import logging
import os.path as osp
from typing import Any, Mapping, Sequence

import numpy as np
from torch.utils.data import Dataset

from detcore.data.bad_data import BadDataError, BadDataReporter
from detcore.data.image_io import ImageReadError
from detcore.data.transforms.compose import Compose
from detcore.errors import located


class CustomDataset(Dataset):
    """Base detection dataset over ``data_infos`` (one dict per image) and ``get_ann_info(idx)``.

    Attributes: ``CLASSES`` (tuple of names), ``data_infos``, ``flag`` (``uint8 (len,)``, 1 when
    ``width / height > 1``), ``img_ids``, ``bad_data`` (a :class:`BadDataReporter`).
    """

    CLASSES: tuple[str, ...] | None = None

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[Mapping[str, Any] | Any] | None = None,
        classes: Sequence[str] | str | None = None,
        data_root: str | None = None,
        img_prefix: str = "",
        seg_prefix: str | None = None,
        proposal_file: str | None = None,
        test_mode: bool = False,
        filter_empty_gt: bool = True,
        min_size: int | None = None,
        strict: bool = False,
    ) -> None:
        self.data_root = data_root
        self.ann_file = self._join(ann_file)
        self.img_prefix = self._join(img_prefix) if img_prefix else (data_root or "")
        self.seg_prefix = self._join(seg_prefix) if seg_prefix else None
        self.proposal_file = self._join(proposal_file) if proposal_file else None
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
        self.strict = strict
        self.bad_data = BadDataReporter(f"{type(self).__name__}({osp.basename(str(ann_file))})", strict)
        self.CLASSES = self.get_classes(classes)
        try:
            self.data_infos: list[dict[str, Any]] = self.load_annotations(self.ann_file)
        except BadDataError:  # strict: its message names the image already
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            located(exc, f"annotation file '{self.ann_file}'")
            raise
        self._renumber_duplicate_ids()
        try:
            self.proposals = self.load_proposals(self.proposal_file) if self.proposal_file else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            located(exc, f"proposal file '{self.proposal_file}'")
            raise
        self._ann_cache: dict[int, dict[str, Any]] = {}
        valid = self._filter_imgs()
        self.data_infos = [self.data_infos[i] for i in valid]
        self._on_filtered(valid)
        if self.proposals is not None:
            self.proposals = [self.proposals[i] for i in valid]
        self._set_group_flag()
        self.pipeline = Compose(pipeline or [])
        self.bad_data.prepare_spool()

    # -- paths, classes ----------------------------------------------------------------------------

    def _join(self, path: str) -> str:
        if self.data_root and path and not osp.isabs(path):
            return osp.join(self.data_root, path)
        return path

    @classmethod
    def get_classes(cls, classes: Sequence[str] | str | None = None) -> tuple[str, ...] | None:
        """``classes``: ``None`` (the class default), a list of names, or a text file with one per line."""
        if classes is None:
            return tuple(cls.CLASSES) if cls.CLASSES is not None else None
        if isinstance(classes, str):
            if not osp.isfile(classes):
                raise FileNotFoundError(
                    f"classes: '{classes}' is neither a list of names nor an existing file"
                )
            with open(classes) as f:
                return tuple(line.strip() for line in f if line.strip())
        names = tuple(classes)
        if len(set(names)) != len(names):
            raise ValueError(f"classes has duplicate names: {names}")
        return names

    # -- loading (overridden by COCO / VOC) --------------------------------------------------------

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        """Read the middle format (see the module docstring)."""
        with open(ann_file) as f:
            data = json.load(f)
        file_classes = None
        if isinstance(data, dict):
            file_classes = tuple(data.get("classes") or ()) or None
            images = data.get("images")
            if images is None:
                raise ValueError(f"{ann_file}: a middle-format dict needs an 'images' list")
        elif isinstance(data, list):
            images = data
        else:
            raise ValueError(f"{ann_file}: expected a list of images or a dict with 'images'")
        if self.CLASSES is None:
            if file_classes is None:
                raise ValueError(f"{ann_file}: no class names; set `classes` in the dataset config")
            self.CLASSES = file_classes
        remap = None
        if file_classes is not None and tuple(self.CLASSES) != file_classes:
            unknown = [c for c in self.CLASSES if c not in file_classes]
            if unknown:
                raise ValueError(
                    f"{ann_file}: classes {unknown} are not in the file's classes {list(file_classes)}"
                )
            remap = {file_classes.index(c): i for i, c in enumerate(self.CLASSES)}
        infos = []
        for i, img in enumerate(images):
            if not isinstance(img, dict) or "filename" not in img:
                self.bad_data.record(
                    "bad_annotation",
                    img.get("id", i) if isinstance(img, dict) else i,
                    "?",
                    "image entry without 'filename'",
                )
                continue
            info = dict(img)
            info.setdefault("id", i)
            ann = dict(info.pop("ann", {}) or {})
            info["_raw_ann"] = ann
            info["_remap"] = remap
            infos.append(info)
        return infos

    def _renumber_duplicate_ids(self) -> None:
        """Two image entries with one id are both kept: the later one gets a new id (reported)."""
        first: dict[Any, str] = {}
        numeric = [i["id"] for i in self.data_infos if isinstance(i.get("id"), int)]
        next_id = max(numeric, default=0) + 1
        for info in self.data_infos:
            img_id = info.get("id")
            if img_id not in first:
                first[img_id] = info.get("filename", "?")
                continue
            self.bad_data.record(
                "duplicate_image_id", img_id, info.get("filename", "?"),
                f"id also used by {first[img_id]}; kept as image id {next_id}",
            )
            info["original_id"], info["id"] = img_id, next_id
            first[next_id] = info.get("filename", "?")
            next_id += 1

    def load_proposals(self, proposal_file: str) -> list[np.ndarray]:
        """Proposals from JSON: a list aligned with the images, or a dict keyed by image id or filename;
        each entry ``[[x1, y1, x2, y2(, score)], ...]``."""
        with open(proposal_file) as f:
            data = json.load(f)
        out = []
        for info in self.data_infos:
            if isinstance(data, list):
                entry = data[len(out)] if len(out) < len(data) else []
            else:
                entry = data.get(str(info.get("id")), data.get(info.get("filename"), []))
            arr = np.asarray(entry, dtype=np.float32)
            out.append(arr.reshape(-1, arr.shape[-1] if arr.ndim == 2 else 4))
        return out

    def parse_ann_info(self, idx: int) -> dict[str, Any]:
        """The middle format's ``ann`` of image ``idx`` -> checked arrays (bad boxes reported)."""
        info = self.data_infos[idx]
        ann = info["_raw_ann"]
        remap = info.get("_remap")
        boxes = ann.get("bboxes", [])
        labels = ann.get("labels", [])
        if len(boxes) != len(labels):
            self.bad_data.record(
                "bad_annotation",
                info["id"],
                info["filename"],
                f"{len(boxes)} boxes but {len(labels)} labels; image annotations dropped",
            )
            boxes, labels = [], []
        kb, kl = [], []
        for box, label in zip(boxes, labels):
            label = int(label)
            if remap is not None:
                if label not in remap:
                    continue  # a class outside the selected subset
                label = remap[label]
            elif not 0 <= label < len(self.CLASSES):
                self.bad_data.record("unknown_category", info["id"], info["filename"], f"label {label}")
                continue
            checked = self.check_box(box, info, xywh=False)
            if checked is not None:
                kb.append(checked)
                kl.append(label)
        ign = [
            b
            for b in (self.check_box(b, info, xywh=False) for b in ann.get("bboxes_ignore", []))
            if b is not None
        ]
        out = {
            "bboxes": np.asarray(kb, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(kl, dtype=np.int64),
            "bboxes_ignore": np.asarray(ign, dtype=np.float32).reshape(-1, 4),
        }
        if "labels_ignore" in ann:
            out["labels_ignore"] = np.asarray(ann["labels_ignore"], dtype=np.int64)
        if "seg_map" in ann:
            out["seg_map"] = ann["seg_map"]
        return out

    def check_box(self, box: Any, info: Mapping[str, Any], xywh: bool = False) -> list[float] | None:
        """Validate one box against its image; report and return ``None`` to skip it, or the
        (possibly clipped) ``[x1, y1, x2, y2]``."""
        img_id, fname = info.get("id"), info.get("filename", "?")
        try:
            vals = [float(v) for v in box]
        except (TypeError, ValueError):
            self.bad_data.record("bad_annotation", img_id, fname, f"box {box!r} is not 4 numbers")
            return None
        if len(vals) != 4:
            self.bad_data.record("bad_annotation", img_id, fname, f"box {box!r} is not 4 numbers")
            return None
        if not np.all(np.isfinite(vals)):
            self.bad_data.record("nan_box", img_id, fname, f"box {box!r}")
            return None
        x1, y1, a, b = vals
        x2, y2 = (x1 + a, y1 + b) if xywh else (a, b)
        if x2 - x1 < 1 or y2 - y1 < 1:
            self.bad_data.record("bad_box_size", img_id, fname, f"box {box!r} has width or height < 1")
            return None
        w, h = info.get("width"), info.get("height")
        if w and h:
            if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
                self.bad_data.record(
                    "box_outside_image", img_id, fname, f"box {box!r} outside the {w}x{h} image"
                )
                return None
            cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                if max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2) > 1.0:  # sub-pixel overshoot is not reported
                    self.bad_data.record("box_clipped", img_id, fname, f"box {box!r} clipped to the image")
                x1, y1, x2, y2 = cx1, cy1, cx2, cy2
        return [x1, y1, x2, y2]

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        """Annotations of image ``idx``: ``bboxes`` ``float32 (N, 4)`` xyxy, ``labels`` ``int64 (N,)``,
        ``bboxes_ignore`` ``(M, 4)`` and, where the dataset has them, ``masks``, ``seg_map``."""
        if idx not in self._ann_cache:
            self._ann_cache[idx] = self.parse_ann_info(idx)
        return self._ann_cache[idx]

    def get_cat_ids(self, idx: int) -> list[int]:
        """Contiguous labels present in image ``idx`` (used by ClassBalancedDataset)."""
        return self.get_ann_info(idx)["labels"].astype(np.int64).tolist()

    # -- filtering and grouping --------------------------------------------------------------------

    def _filter_imgs(self) -> list[int]:
        """Indices kept: images whose file exists, at least ``min_size`` pixels (when set) and, in
        training with ``filter_empty_gt``, with at least one valid box. Every drop is reported."""
        keep = []
        for i, info in enumerate(self.data_infos):
            path = osp.join(self.img_prefix, info["filename"]) if self.img_prefix else info["filename"]
            if not osp.isfile(path):
                self.bad_data.record("missing_image", info.get("id"), path, "file not found")
                continue
            if osp.getsize(path) == 0:
                self.bad_data.record("empty_image", info.get("id"), path, "the file has 0 bytes")
                continue
            size = (info.get("width"), info.get("height"))
            if any(v is not None and not (isinstance(v, (int, float)) and v > 0) for v in size):
                self.bad_data.record(
                    "bad_image_size", info.get("id"), path, f"width x height {size[0]!r} x {size[1]!r}"
                )
                continue
            if self.min_size and min(info.get("width", 1e9), info.get("height", 1e9)) < self.min_size:
                continue
            ann = self.get_ann_info(i)
            if not self.test_mode and self.filter_empty_gt and len(ann["bboxes"]) == 0:
                self.bad_data.record(
                    "no_annotations", info.get("id"), path, "no valid box; dropped from training"
                )
                continue
            keep.append(i)
        return keep

    def _on_filtered(self, valid: list[int]) -> None:
        """Re-index per-image caches after filtering."""
        self._ann_cache = {
            new: self._ann_cache[old] for new, old in enumerate(valid) if old in self._ann_cache
        }

    def _set_group_flag(self) -> None:
        self.flag = np.zeros(len(self), dtype=np.uint8)
        for i, info in enumerate(self.data_infos):
            if info.get("width", 0) / max(info.get("height", 1), 1) > 1:
                self.flag[i] = 1

    @property
    def img_ids(self) -> list[Any]:
        return [info["id"] for info in self.data_infos]

    # -- items -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.data_infos)

    def pre_pipeline(self, results: dict[str, Any]) -> dict[str, Any]:
        results["img_prefix"] = self.img_prefix
        results["seg_prefix"] = self.seg_prefix
        results["proposal_file"] = self.proposal_file
        results["bbox_fields"] = []
        results["mask_fields"] = []
        results["seg_fields"] = []
        return results

    def prepare_img(self, idx: int) -> Any:
        info = {k: v for k, v in self.data_infos[idx].items() if not k.startswith("_")}
        results: dict[str, Any] = {"img_info": info, "ann_info": self.get_ann_info(idx)}
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        return self.pipeline(self.pre_pipeline(results))

    def _rand_another(self, idx: int) -> int:
        pool = np.nonzero(self.flag == self.flag[idx])[0]
        return int(np.random.choice(pool))

    def __getitem__(self, idx: int) -> Any:
        if self.test_mode:
            try:
                return self.prepare_img(idx)
            except ImageReadError as exc:
                info = self.data_infos[idx]
                self.bad_data.record_runtime("corrupt_image", info.get("id"), info.get("filename"), str(exc))
                return None
        for _ in range(max(10 * len(self), 100)):
            try:
                data = self.prepare_img(idx)
            except ImageReadError as exc:
                info = self.data_infos[idx]
                self.bad_data.record_runtime("corrupt_image", info.get("id"), info.get("filename"), str(exc))
                data = None
            if data is not None:
                return data
            idx = self._rand_another(idx)
        raise RuntimeError(f"{type(self).__name__}: no usable sample after many retries (all images bad?)")

    # -- bad data ----------------------------------------------------------------------------------

    def bad_data_summary(self) -> dict[str, int]:
        """``{reason: count}`` of everything skipped or fixed so far (indexing + reading)."""
        return self.bad_data.summary()

    def log_bad_data_summary(self, logger: logging.Logger | None = None) -> dict[str, int]:
        """Log one line with the counts and start a new epoch's count of reading problems."""
        return self.bad_data.log_summary(logger)

    def __repr__(self) -> str:
        mode = "test" if self.test_mode else "train"
        return f"{type(self).__name__}({mode}, {len(self)} images, {len(self.CLASSES or ())} classes)"
