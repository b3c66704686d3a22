"""Non-maximum suppression: ``nms``, ``batched_nms``, ``soft_nms`` and ``multiclass_nms``.

Boxes are (N, 4) xyxy float pixels, area ``(x2 - x1) * (y2 - y1)`` (no +1). Greedy NMS keeps a box unless a
kept box with a higher score (equal scores: lower index first) has IoU strictly greater than the threshold.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import check_dim, check_float, check_last, check_same, check_tensor

_SOFT_METHODS = {"naive": 0, "linear": 1, "gaussian": 2}
_SPLIT_THR = 10000  # above this many boxes, batched NMS runs class by class (as the reference does)


def _check_boxes_scores(op: str, boxes: Tensor, scores: Tensor) -> Tuple[Tensor, Tensor]:
    check_tensor(op, "boxes", boxes)
    check_tensor(op, "scores", scores)
    check_float(op, "boxes", boxes)
    check_float(op, "scores", scores)
    check_dim(op, "boxes", boxes, 2, "(N, 4)")
    check_last(op, "boxes", boxes, 4, "(N, 4)")
    check_dim(op, "scores", scores, 1, "(N,)")
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"{op}: 'scores' has {scores.shape[0]} entries but 'boxes' has {boxes.shape[0]}")
    check_same(op, "boxes", boxes, "scores", scores, dtype=False)
    dtype = boxes.dtype if boxes.dtype in (torch.float32, torch.float64) else torch.float32
    return boxes.detach().to(dtype).contiguous(), scores.detach().to(dtype).contiguous()


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS. (N, 4) xyxy boxes, (N,) scores -> (K,) long indices of kept boxes by descending score."""
    boxes, scores = _check_boxes_scores("nms", boxes, scores)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    if use_native():
        return torch.ops.detcore.nms(boxes, scores, float(iou_threshold))
    return _ref.nms(boxes, scores, float(iou_threshold))


def _offset_boxes(boxes: Tensor, idxs: Tensor) -> Tensor:
    """Shift each class's boxes into its own region so one class-agnostic NMS never mixes classes."""
    if boxes.shape[0] == 0:
        return boxes
    lo = boxes.min()
    span = boxes.max() - lo + 1
    return boxes - lo + (idxs.to(boxes.dtype) * span)[:, None]


def _check_idxs(op: str, boxes: Tensor, idxs: Tensor) -> None:
    check_tensor(op, "idxs", idxs)
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"{op}: 'idxs' must have shape ({boxes.shape[0]},), got {tuple(idxs.shape)}")
    if idxs.is_floating_point() or idxs.dtype == torch.bool:
        raise TypeError(f"{op}: 'idxs' must be an integer tensor, got dtype {idxs.dtype}")
    check_same(op, "boxes", boxes, "idxs", idxs, dtype=False)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes only suppress boxes with the same ``idxs`` (N,) integer category.

    Returns the (K,) long indices kept, by descending score.
    """
    boxes_c, scores_c = _check_boxes_scores("batched_nms", boxes, scores)
    _check_idxs("batched_nms", boxes_c, idxs)
    if boxes_c.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes_c.device)
    if boxes_c.shape[0] <= _SPLIT_THR or torch.compiler.is_compiling():
        return nms(_offset_boxes(boxes_c, idxs), scores_c, iou_threshold)
    keep_mask = torch.zeros(boxes_c.shape[0], dtype=torch.bool, device=boxes_c.device)
    for cls in torch.unique(idxs):
        inds = torch.nonzero(idxs == cls).view(-1)
        keep_mask[inds[nms(boxes_c[inds], scores_c[inds], iou_threshold)]] = True
    keep = torch.nonzero(keep_mask).view(-1)
    return keep[torch.sort(scores_c[keep], descending=True, stable=True).indices]


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    min_score: float = 1e-3,
    method: str = "linear",
) -> Tuple[Tensor, Tensor]:
    """Soft-NMS. Returns (dets (K, 5): xyxy + decayed score, keep (K,) long) in selection order.

    ``method``: ``"linear"`` multiplies a score by ``1 - iou`` when ``iou > iou_threshold``,
    ``"gaussian"`` by ``exp(-iou^2 / sigma)``, ``"naive"`` zeroes it when ``iou > iou_threshold``. Boxes whose
    score drops below ``min_score`` are discarded. Equal scores are taken lowest index first.
    """
    boxes_c, scores_c = _check_boxes_scores("soft_nms", boxes, scores)
    if method not in _SOFT_METHODS:
        raise ValueError(f"soft_nms: 'method' must be one of {sorted(_SOFT_METHODS)}, got {method!r}")
    if sigma <= 0 and method == "gaussian":
        raise ValueError(f"soft_nms: 'sigma' must be > 0, got {sigma}")
    if boxes_c.shape[0] == 0:
        return boxes_c.new_zeros((0, 5)), torch.empty(0, dtype=torch.long, device=boxes_c.device)
    if use_native():
        dets, keep = torch.ops.detcore.soft_nms(
            boxes_c, scores_c, float(iou_threshold), float(sigma), float(min_score), _SOFT_METHODS[method]
        )
    else:
        dets, keep = _ref.soft_nms(
            boxes_c, scores_c, float(iou_threshold), float(sigma), float(min_score), method
        )
    return dets.to(boxes.dtype), keep


def _batched_nms_with_cfg(
    boxes: Tensor, scores: Tensor, idxs: Tensor, nms_cfg: Dict[str, Any]
) -> Tuple[Tensor, Tensor]:
    """Class-aware NMS configured by a dict ({"type": "nms"|"soft_nms", "iou_threshold": ..., ...}).

    Returns (dets (K, 5) with the post-NMS scores, keep (K,)) sorted by descending score.
    """
    cfg = dict(nms_cfg)
    nms_type = cfg.pop("type", "nms")
    class_agnostic = bool(cfg.pop("class_agnostic", False))
    cfg.pop("split_thr", None)
    max_num = int(cfg.pop("max_num", -1))
    if "iou_thr" in cfg:  # old spelling of the reference's configs
        cfg["iou_threshold"] = cfg.pop("iou_thr")
    if nms_type == "nms":
        unknown = set(cfg) - {"iou_threshold"}
        if unknown:
            raise ValueError(f"multiclass_nms: unknown keys {sorted(unknown)} for nms_cfg type 'nms'")
        if class_agnostic:
            keep = nms(boxes, scores, cfg.get("iou_threshold", 0.5))
        else:
            keep = batched_nms(boxes, scores, idxs, cfg.get("iou_threshold", 0.5))
        new_scores = scores[keep]
    elif nms_type == "soft_nms":
        unknown = set(cfg) - {"iou_threshold", "sigma", "min_score", "method"}
        if unknown:
            raise ValueError(f"multiclass_nms: unknown keys {sorted(unknown)} for nms_cfg type 'soft_nms'")
        boxes_for_nms = boxes if class_agnostic else _offset_boxes(boxes.detach(), idxs)
        dets, keep = soft_nms(boxes_for_nms, scores, **cfg)
        new_scores = dets[:, 4].to(scores.dtype)
        order = torch.sort(new_scores, descending=True, stable=True).indices
        keep, new_scores = keep[order], new_scores[order]
    else:
        raise ValueError(f"multiclass_nms: nms_cfg type must be 'nms' or 'soft_nms', got {nms_type!r}")
    if max_num > 0:
        keep, new_scores = keep[:max_num], new_scores[:max_num]
    return torch.cat([boxes[keep], new_scores[:, None]], dim=1), keep


def multiclass_nms(
    multi_bboxes: Tensor,
    multi_scores: Tensor,
    score_thr: float,
    nms_cfg: Dict[str, Any],
    max_num: int = -1,
    score_factors: Optional[Tensor] = None,
    return_inds: bool = False,
) -> Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]:
    """Per-class NMS of detections, as the reference's 2.x dense and bbox heads use it.

    Args:
        multi_bboxes: (N, C*4) class-specific or (N, 4) shared xyxy boxes.
        multi_scores: (N, C+1) scores; the last column (background) is ignored.
        score_thr: candidates with score <= score_thr are dropped (tested on the raw scores; as in the
            reference, ``score_factors`` (N,) multiply the scores after this test).
        nms_cfg: {"type": "nms"|"soft_nms", "iou_threshold": float, ...}; "class_agnostic" optional.
        max_num: keep at most this many detections after NMS (<= 0: all).
        return_inds: also return the indices of the kept candidates in the flattened (N*C) list.

    Returns:
        dets (K, 5) xyxy + score sorted by descending score, labels (K,) long (and inds (K,) long).
    """
    op = "multiclass_nms"
    check_tensor(op, "multi_bboxes", multi_bboxes)
    check_tensor(op, "multi_scores", multi_scores)
    check_dim(op, "multi_scores", multi_scores, 2, "(N, C+1)")
    check_dim(op, "multi_bboxes", multi_bboxes, 2, "(N, 4) or (N, C*4)")
    n = multi_scores.shape[0]
    num_classes = multi_scores.shape[1] - 1
    if multi_bboxes.shape[0] != n:
        raise ValueError(f"{op}: 'multi_bboxes' has {multi_bboxes.shape[0]} rows but 'multi_scores' has {n}")
    if multi_bboxes.shape[1] == 4:
        bboxes = multi_bboxes[:, None].expand(n, num_classes, 4)
    elif multi_bboxes.shape[1] == 4 * num_classes:
        bboxes = multi_bboxes.view(n, num_classes, 4)
    else:
        raise ValueError(
            f"{op}: 'multi_bboxes' must have 4 or {4 * num_classes} columns for {num_classes} classes, "
            f"got {tuple(multi_bboxes.shape)}"
        )
    scores = multi_scores[:, :-1]
    labels = torch.arange(num_classes, dtype=torch.long, device=scores.device).view(1, -1).expand_as(scores)
    bboxes = bboxes.reshape(-1, 4)
    scores = scores.reshape(-1)
    labels = labels.reshape(-1)
    valid = scores > score_thr
    if score_factors is not None:
        if score_factors.numel() != n:
            raise ValueError(f"{op}: 'score_factors' must have {n} entries, got {tuple(score_factors.shape)}")
        scores = scores * score_factors.view(-1, 1).expand(n, num_classes).reshape(-1)
    inds = torch.nonzero(valid).view(-1)
    bboxes, scores, labels = bboxes[inds], scores[inds], labels[inds]
    if bboxes.numel() == 0:
        dets = torch.cat([bboxes, scores[:, None]], dim=-1)
        return (dets, labels, inds) if return_inds else (dets, labels)
    dets, keep = _batched_nms_with_cfg(bboxes, scores, labels, nms_cfg)
    if max_num > 0:
        dets, keep = dets[:max_num], keep[:max_num]
    return (dets, labels[keep], inds[keep]) if return_inds else (dets, labels[keep])
