"""Pascal VOC-style mean average precision, written in detcore (NumPy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def average_precision(recalls: np.ndarray, precisions: np.ndarray, mode: str = "area") -> float:
    """AP of one precision/recall curve (detections sorted by score).

    ``mode = "area"``: area under the monotone (interpolated) precision envelope (VOC 2010+);
    ``"11points"``: mean of the best precision at recall >= 0, 0.1, ..., 1 (VOC 2007).
    """
    recalls = np.asarray(recalls, dtype=np.float64).reshape(-1)
    precisions = np.asarray(precisions, dtype=np.float64).reshape(-1)
    if mode == "area":
        mrec = np.concatenate([[0.0], recalls, [1.0]])
        mpre = np.concatenate([[0.0], precisions, [0.0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    if mode == "11points":
        ap = 0.0
        for thr in np.arange(0, 1.1, 0.1):
            p = precisions[recalls >= thr]
            ap += p.max() if p.size else 0.0
        return float(ap / 11)
    raise ValueError(f"average_precision: mode must be 'area' or '11points', got {mode!r}")


def bbox_overlaps(a: np.ndarray, b: np.ndarray, extra: float = 0.0) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of xyxy boxes; ``extra`` = 1 for VOC's inclusive pixel widths."""
    area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
    area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + extra, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, np.finfo(np.float32).eps)


def tpfp(
    dets: np.ndarray, gts: np.ndarray, gts_ignore: np.ndarray, iou_thr: float = 0.5, extra: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """True/false positives of one image's detections ``(K, 5)`` (xyxy, score) of one class.

    A detection matching (IoU >= ``iou_thr``, its best-overlapping gt) an ignored gt counts as neither;
    a second detection of an already matched gt is a false positive.
    """
    k = len(dets)
    tp = np.zeros(k, dtype=np.float32)
    fp = np.zeros(k, dtype=np.float32)
    all_gts = np.concatenate([gts.reshape(-1, 4), gts_ignore.reshape(-1, 4)])
    ignore = np.concatenate([np.zeros(len(gts), bool), np.ones(len(gts_ignore), bool)])
    if len(all_gts) == 0:
        fp[:] = 1
        return tp, fp
    ious = bbox_overlaps(dets[:, :4], all_gts, extra)
    ious_max = ious.max(1)
    ious_arg = ious.argmax(1)
    covered = np.zeros(len(all_gts), dtype=bool)
    for i in np.argsort(-dets[:, 4], kind="stable"):
        if ious_max[i] >= iou_thr:
            g = ious_arg[i]
            if ignore[g]:
                continue
            if not covered[g]:
                covered[g] = True
                tp[i] = 1
            else:
                fp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


def eval_map(
    det_results: Sequence[Sequence[np.ndarray]],
    annotations: Sequence[dict],
    iou_thr: float = 0.5,
    eval_mode: str = "area",
    use_legacy_coordinate: bool = False,
    num_classes: int | None = None,
) -> tuple[float, list[dict]]:
    """VOC mAP.

    ``det_results[i][c]``: ``(K, 5)`` detections (xyxy, score) of class ``c`` in image ``i``;
    ``annotations[i]``: ``{"bboxes": (N, 4), "labels": (N,), "bboxes_ignore": (M, 4),
    "labels_ignore": (M,)}``.
    ``use_legacy_coordinate`` adds 1 to widths and heights (VOC's inclusive pixel boxes).
    Returns ``(mAP over classes that have ground truth, per-class dicts with num_gts, num_dets,
    recall, precision, ap)``.
    """
    if len(det_results) != len(annotations):
        raise ValueError(f"eval_map: {len(det_results)} detection entries but {len(annotations)} annotations")
    extra = 1.0 if use_legacy_coordinate else 0.0
    if num_classes is None:
        num_classes = len(det_results[0]) if det_results else 0
    per_class = []
    for c in range(num_classes):
        tps, fps, scores = [], [], []
        num_gts = 0
        for dets_img, ann in zip(det_results, annotations):
            dets = np.asarray(dets_img[c], dtype=np.float32).reshape(-1, 5)
            labels = np.asarray(ann["labels"]).reshape(-1)
            gts = np.asarray(ann["bboxes"], dtype=np.float32).reshape(-1, 4)[labels == c]
            ign_labels = np.asarray(ann.get("labels_ignore", np.zeros(0))).reshape(-1)
            ign = np.asarray(ann.get("bboxes_ignore", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
            ign = ign[ign_labels == c] if len(ign_labels) == len(ign) else ign
            num_gts += len(gts)
            tp, fp = tpfp(dets, gts, ign, iou_thr, extra)
            tps.append(tp)
            fps.append(fp)
            scores.append(dets[:, 4])
        score = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-score, kind="stable")
        tp = np.concatenate(tps)[order] if tps else np.zeros(0)
        fp = np.concatenate(fps)[order] if fps else np.zeros(0)
        tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
        eps = np.finfo(np.float32).eps
        recall = tp_c / max(num_gts, eps)
        precision = tp_c / np.maximum(tp_c + fp_c, eps)
        ap = average_precision(recall, precision, eval_mode) if num_gts > 0 else 0.0
        per_class.append(
            {
                "num_gts": num_gts,
                "num_dets": int(len(score)),
                "recall": recall,
                "precision": precision,
                "ap": ap,
            }
        )
    aps = [r["ap"] for r in per_class if r["num_gts"] > 0]
    return (float(np.mean(aps)) if aps else 0.0), per_class
