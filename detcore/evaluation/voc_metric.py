"""``VOCMetric``: Pascal VOC mAP at one IoU threshold (``area`` or VOC2007 ``11points`` AP)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class VOCMetric:
    """VOC evaluation against ``dataset.get_ann_info`` (difficult objects are ignored).

    ``compute`` returns ``mAP`` (also as ``AP{iou*100}``, e.g. ``AP50``) and ``AP_{class}`` per class.
    ``use_legacy_coordinate=None`` means "True for VOC-style XML datasets" (boxes loaded with -1,
    areas with +1, as the reference).
    """

    def __init__(
        self,
        dataset: Any = None,
        iou_thr: float = 0.5,
        eval_mode: str = "area",
        use_legacy_coordinate: bool | None = None,
    ) -> None:
        if dataset is None:
            raise ValueError("VOCMetric needs the dataset it evaluates")
        if eval_mode not in ("area", "11points"):
            raise ValueError(f"VOCMetric: eval_mode must be 'area' or '11points', got {eval_mode!r}")
        self.dataset = dataset
        self.iou_thr = float(iou_thr)
        self.eval_mode = eval_mode
        if use_legacy_coordinate is None:
            from detcore.data.datasets.voc import XMLDataset

            use_legacy_coordinate = isinstance(dataset, XMLDataset)
        self.use_legacy_coordinate = use_legacy_coordinate
        self.results: list[dict[str, Any]] = []

    def process(self, img_metas: Sequence[dict], predictions: Sequence[Any]) -> None:
        for meta, pred in zip(img_metas, predictions):
            self.results.append(
                {
                    "img_id": meta["img_id"],
                    "bboxes": _np(pred.bboxes).astype(np.float32).reshape(-1, 4),
                    "scores": _np(pred.scores).astype(np.float32).reshape(-1),
                    "labels": _np(pred.labels).astype(np.int64).reshape(-1),
                }
            )

    def compute(self, results: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
        from detcore.evaluation.mean_ap import eval_map

        results = self.results if results is None else results
        classes = list(self.dataset.CLASSES)
        by_id = {}
        for rec in results:
            by_id.setdefault(rec["img_id"], rec)
        dets, anns = [], []
        for idx, img_id in enumerate(self.dataset.img_ids):
            rec = by_id.get(img_id)
            per_cls = []
            for c in range(len(classes)):
                if rec is None:
                    per_cls.append(np.zeros((0, 5), np.float32))
                    continue
                keep = rec["labels"] == c
                per_cls.append(np.concatenate([rec["bboxes"][keep], rec["scores"][keep, None]], 1))
            dets.append(per_cls)
            anns.append(self.dataset.get_ann_info(idx))
        mean_ap, per_class = eval_map(
            dets, anns, self.iou_thr, self.eval_mode, self.use_legacy_coordinate, num_classes=len(classes)
        )
        out = {"mAP": mean_ap, f"AP{int(round(self.iou_thr * 100))}": mean_ap}
        for name, r in zip(classes, per_class):
            out[f"AP_{name}"] = float(r["ap"])
        return out

    def reset(self) -> None:
        self.results = []
