"""Pairwise and aligned overlaps of xyxy boxes (IoU, IoF, GIoU), as the assigners need them."""

from __future__ import annotations

import torch
from torch import Tensor

_MODES = ("iou", "iof", "giou")


def box_overlaps(
    bboxes1: Tensor, bboxes2: Tensor, mode: str = "iou", aligned: bool = False, eps: float = 1e-6
) -> Tensor:
    """Overlaps between two sets of xyxy boxes (area ``(x2 - x1) * (y2 - y1)``, no +1).

    Args:
        bboxes1: (..., M, 4). bboxes2: (..., N, 4) with the same leading (batch) dims.
        mode: "iou" (intersection / union), "iof" (intersection / area of bboxes1) or "giou".
        aligned: if True, M must equal N and row i is compared with row i only.
        eps: added to the denominators' lower bound to avoid division by zero.

    Returns:
        (..., M, N) overlaps, or (..., M) when ``aligned``. Empty inputs give empty results.
    """
    if mode not in _MODES:
        raise ValueError(f"box_overlaps: 'mode' must be one of {_MODES}, got {mode!r}")
    if bboxes1.shape[-1] != 4 and bboxes1.numel() != 0 or bboxes2.shape[-1] != 4 and bboxes2.numel() != 0:
        raise ValueError(
            "box_overlaps: boxes must have shape (..., 4), "
            f"got {tuple(bboxes1.shape)} and {tuple(bboxes2.shape)}"
        )
    if bboxes1.shape[:-2] != bboxes2.shape[:-2]:
        raise ValueError(
            f"box_overlaps: batch dims differ: {tuple(bboxes1.shape[:-2])} vs {tuple(bboxes2.shape[:-2])}"
        )
    if bboxes1.device != bboxes2.device:
        raise ValueError(f"box_overlaps: bboxes1 is on {bboxes1.device} but bboxes2 is on {bboxes2.device}")
    batch_shape = bboxes1.shape[:-2]
    rows, cols = bboxes1.shape[-2], bboxes2.shape[-2]
    if aligned and rows != cols:
        raise ValueError(
            f"box_overlaps: aligned=True needs as many boxes in both sets, got {rows} and {cols}"
        )
    if rows * cols == 0:
        shape = batch_shape + ((rows,) if aligned else (rows, cols))
        return bboxes1.new_zeros(shape)
    area1 = (bboxes1[..., 2] - bboxes1[..., 0]) * (bboxes1[..., 3] - bboxes1[..., 1])
    area2 = (bboxes2[..., 2] - bboxes2[..., 0]) * (bboxes2[..., 3] - bboxes2[..., 1])
    if aligned:
        lt = torch.max(bboxes1[..., :2], bboxes2[..., :2])
        rb = torch.min(bboxes1[..., 2:], bboxes2[..., 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = area1 + area2 - overlap if mode in ("iou", "giou") else area1
        if mode == "giou":
            enclosed_lt = torch.min(bboxes1[..., :2], bboxes2[..., :2])
            enclosed_rb = torch.max(bboxes1[..., 2:], bboxes2[..., 2:])
    else:
        lt = torch.max(bboxes1[..., :, None, :2], bboxes2[..., None, :, :2])
        rb = torch.min(bboxes1[..., :, None, 2:], bboxes2[..., None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = (
            area1[..., None] + area2[..., None, :] - overlap if mode in ("iou", "giou") else area1[..., None]
        )
        if mode == "giou":
            enclosed_lt = torch.min(bboxes1[..., :, None, :2], bboxes2[..., None, :, :2])
            enclosed_rb = torch.max(bboxes1[..., :, None, 2:], bboxes2[..., None, :, 2:])
    eps_t = union.new_tensor([eps])
    union = torch.max(union, eps_t)
    ious = overlap / union
    if mode != "giou":
        return ious
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min=0)
    enclose_area = torch.max(enclose_wh[..., 0] * enclose_wh[..., 1], eps_t)
    return ious - (enclose_area - union) / enclose_area
