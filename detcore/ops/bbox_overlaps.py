"""Pairwise and aligned overlaps of xyxy boxes (IoU, IoF, GIoU), as the assigners need them."""

from __future__ import annotations

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native

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

    The native kernel (fused, no (M, N, 2) intermediates) runs for 2-D float32/float64 inputs that need no
    gradient, which is how the assigners call it; otherwise the broadcasting reference runs, and it is
    differentiable (the IoU losses).
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
    if use_native() and _native_ok(bboxes1, bboxes2):
        return torch.ops.detcore.box_overlaps(
            bboxes1.contiguous(), bboxes2.contiguous(), _MODES.index(mode), bool(aligned), float(eps)
        )
    return _ref.box_overlaps(bboxes1, bboxes2, mode, aligned, eps)


def _native_ok(bboxes1: Tensor, bboxes2: Tensor) -> bool:
    needs_grad = torch.is_grad_enabled() and (bboxes1.requires_grad or bboxes2.requires_grad)
    return (
        not needs_grad
        and bboxes1.dim() == 2
        and bboxes1.dtype == bboxes2.dtype
        and bboxes1.dtype in (torch.float32, torch.float64)
    )
