"""``CocoMetric``: COCO bbox / segm mAP and proposal recall with pycocotools' ``COCOeval``.

Predictions come as one ``Instances`` per image in **original-image** coordinates (``bboxes`` xyxy,
``scores``, contiguous ``labels``, optional bool ``masks (N, H, W)`` and optional ``mask_scores (N,)``);
labels are mapped back to the annotation file's category ids (``dataset.cat_ids``) before evaluation.
The segm results are scored by ``mask_scores`` when the predictions have them (Mask Scoring R-CNN's
classification score x predicted mask IoU), else by ``scores``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import os.path as osp
from typing import Any, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

_STAT_NAMES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
_AR_NAMES = ("AR@{0}", "AR@{1}", "AR@{2}", "AR_s@{2}", "AR_m@{2}", "AR_l@{2}")


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class CocoMetric:
    """COCO evaluation.

    ``metric``: any of ``"bbox"``, ``"segm"``, ``"proposal"`` (class-agnostic recall AR@N for
    ``proposal_nums``). ``classwise`` adds ``{metric}_AP_{class}``. ``outfile_prefix`` writes
    ``{prefix}.bbox.json`` / ``.segm.json`` / ``.proposal.json`` in the COCO results format.
    The ground truth is ``dataset.coco`` or ``ann_file``; evaluated images are ``dataset.img_ids``
    (all images of the annotation file without a dataset).

    ``compute`` returns e.g. ``bbox_mAP``, ``bbox_mAP_50``, ``bbox_mAP_75``, ``bbox_mAP_s/m/l``,
    ``segm_mAP...``, ``AR@100``, ``AR@300``, ``AR@1000``, ``AR_s@1000``...
    """

    def __init__(
        self,
        dataset: Any = None,
        ann_file: str | None = None,
        metric: str | Sequence[str] = ("bbox",),
        classwise: bool = False,
        proposal_nums: Sequence[int] = (100, 300, 1000),
        outfile_prefix: str | None = None,
        iou_thrs: Sequence[float] | None = None,
    ) -> None:
        metrics = [metric] if isinstance(metric, str) else list(metric)
        for m in metrics:
            if m not in ("bbox", "segm", "proposal"):
                raise ValueError(f"CocoMetric: unknown metric {m!r}; use bbox, segm or proposal")
        if dataset is None and ann_file is None:
            raise ValueError("CocoMetric needs a dataset (with a .coco) or an ann_file")
        self.dataset = dataset
        self.ann_file = ann_file
        self.metrics = metrics
        self.classwise = classwise
        self.proposal_nums = tuple(int(n) for n in proposal_nums)
        self.outfile_prefix = outfile_prefix
        self.iou_thrs = (
            np.asarray(iou_thrs, dtype=np.float64)
            if iou_thrs is not None
            else np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        )
        self.results: list[dict[str, Any]] = []
        self._coco: COCO | None = None

    # -- ground truth ------------------------------------------------------------------------------

    @property
    def coco(self) -> COCO:
        if self._coco is None:
            coco = getattr(self.dataset, "coco", None) if self.dataset is not None else None
            if coco is None:
                if self.ann_file is None:
                    raise ValueError("CocoMetric: the dataset has no .coco; give ann_file")
                with contextlib.redirect_stdout(io.StringIO()):
                    coco = COCO(self.ann_file)
            self._coco = coco
        return self._coco

    @property
    def cat_ids(self) -> list[int]:
        ids = getattr(self.dataset, "cat_ids", None) if self.dataset is not None else None
        return list(ids) if ids is not None else sorted(self.coco.getCatIds())

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.coco.loadCats(self.cat_ids)]

    # -- accumulate --------------------------------------------------------------------------------

    def process(self, img_metas: Sequence[dict], predictions: Sequence[Any]) -> None:
        """Store one CPU record per image: ``img_id``, boxes, scores, labels, RLE masks (segm)."""
        if len(img_metas) != len(predictions):
            raise ValueError(
                f"CocoMetric.process: {len(img_metas)} img_metas but {len(predictions)} predictions"
            )
        for meta, pred in zip(img_metas, predictions):
            if "img_id" not in meta:
                raise KeyError(
                    "CocoMetric.process: img_meta has no 'img_id' (keep it in PackDetInputs.meta_keys)"
                )
            rec: dict[str, Any] = {
                "img_id": meta["img_id"],
                "bboxes": _np(pred.bboxes).astype(np.float32).reshape(-1, 4),
                "scores": _np(pred.scores).astype(np.float32).reshape(-1)
                if pred.has("scores")
                else np.ones(len(pred), np.float32),
                "labels": _np(pred.labels).astype(np.int64).reshape(-1)
                if pred.has("labels")
                else np.zeros(len(pred), np.int64),
            }
            if "segm" in self.metrics and pred.has("masks"):
                masks = pred.masks
                masks = masks.to_ndarray() if hasattr(masks, "to_ndarray") else _np(masks)
                rles = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
                if isinstance(rles, dict):
                    rles = [rles]
                rec["masks"] = rles
                if pred.has("mask_scores"):
                    rec["mask_scores"] = _np(pred.mask_scores).astype(np.float32).reshape(-1)
            self.results.append(rec)

    # -- results files -----------------------------------------------------------------------------

    def results2json(self, results: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """COCO results lists per metric: ``{"bbox": [...], "segm": [...], "proposal": [...]}``."""
        cat_ids = self.cat_ids
        out: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": [], "proposal": []}
        for rec in results:
            boxes = rec["bboxes"]
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1) if len(boxes) else boxes
            for i in range(len(boxes)):
                box = [float(v) for v in xywh[i]]
                score = float(rec["scores"][i])
                # class-agnostic: any category of the file works (COCOeval with useCats=0 pools them)
                out["proposal"].append(
                    {"image_id": rec["img_id"], "bbox": box, "score": score, "category_id": cat_ids[0]}
                )
                label = int(rec["labels"][i])
                if not 0 <= label < len(cat_ids):
                    raise ValueError(
                        f"CocoMetric: label {label} outside [0, {len(cat_ids)}) for image {rec['img_id']}"
                    )
                item = {"image_id": rec["img_id"], "bbox": box, "score": score, "category_id": cat_ids[label]}
                out["bbox"].append(item)
                if "masks" in rec:
                    rle = dict(rec["masks"][i])
                    if isinstance(rle["counts"], bytes):
                        rle["counts"] = rle["counts"].decode()
                    segm_score = float(rec["mask_scores"][i]) if "mask_scores" in rec else score
                    out["segm"].append({**item, "score": segm_score, "segmentation": rle})
        return out

    # -- compute -----------------------------------------------------------------------------------

    def compute(self, results: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
        """Evaluate ``results`` (default: ``self.results``) and return ``{name: value}``."""
        results = self.results if results is None else results
        # the same image may be seen twice (distributed padding): keep its first record
        seen, unique = set(), []
        for rec in results:
            if rec["img_id"] not in seen:
                seen.add(rec["img_id"])
                unique.append(rec)
        jsons = self.results2json(unique)
        if self.outfile_prefix:
            os.makedirs(osp.dirname(osp.abspath(self.outfile_prefix)), exist_ok=True)
            for m in self.metrics:
                with open(f"{self.outfile_prefix}.{m}.json", "w") as f:
                    json.dump(jsons[m], f)
        img_ids = list(getattr(self.dataset, "img_ids", None) or sorted(self.coco.getImgIds()))
        metrics: dict[str, float] = {}
        for m in self.metrics:
            dets = jsons[m]
            iou_type = "bbox" if m == "proposal" else m
            if m == "segm" and unique and not any("masks" in r for r in unique):
                raise ValueError("CocoMetric: 'segm' requested but the predictions have no masks")
            if not dets:
                names = (
                    [n.format(*self.proposal_nums) for n in _AR_NAMES]
                    if m == "proposal"
                    else [f"{m}_{n}" for n in _STAT_NAMES]
                )
                metrics.update({n: 0.0 for n in names})
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt = self.coco.loadRes(dets)
                ev = COCOeval(self.coco, coco_dt, iou_type)
                ev.params.imgIds = img_ids
                ev.params.iouThrs = self.iou_thrs
                if m == "proposal":
                    ev.params.useCats = 0
                    ev.params.maxDets = list(self.proposal_nums)
                else:
                    ev.params.catIds = self.cat_ids
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            if m == "proposal":
                for k, name in enumerate(_AR_NAMES):
                    metrics[name.format(*self.proposal_nums)] = float(ev.stats[6 + k])
                continue
            for k, name in enumerate(_STAT_NAMES):
                metrics[f"{m}_{name}"] = float(ev.stats[k])
            if self.classwise:
                precisions = ev.eval["precision"]  # (T, R, K, A, M)
                for k, cname in enumerate(self.class_names):
                    p = precisions[:, :, k, 0, -1]
                    p = p[p > -1]
                    metrics[f"{m}_AP_{cname}"] = float(np.mean(p)) if p.size else float("nan")
        return metrics

    def reset(self) -> None:
        self.results = []
