"""Validation shared by RoIAlign and RoIPool."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_dim, check_float, check_same, check_tensor
from ._precision import compute_dtype


def check_roi_inputs(op: str, input: Tensor, rois: Tensor) -> torch.dtype:
    """Check (B, C, H, W) float features and (K, 5) rois ``(batch, x1, y1, x2, y2)`` on one device.

    Returns the dtype to compute in (see :func:`compute_dtype`): float16/bfloat16 features are pooled in
    float32 and the result is cast back to the features' dtype by the caller.
    """
    check_tensor(op, "input", input)
    check_tensor(op, "rois", rois)
    check_float(op, "input", input)
    check_dim(op, "input", input, 4, "(B, C, H, W)")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"{op}: 'rois' must have shape (K, 5) as (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}"
        )
    check_float(op, "rois", rois)
    check_same(op, "input", input, "rois", rois, dtype=False)
    dtype = compute_dtype(op, [("input", input), ("rois", rois)])
    if rois.shape[0] and rois.device.type == "cpu" and not torch.compiler.is_compiling():
        bad = ~torch.isfinite(rois).all(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{op}: 'rois' must be finite, got {rois[row].tolist()} at row {row} "
                "(NaN or inf boxes usually mean the training diverged)"
            )
        b = rois[:, 0]
        if bool(((b < 0) | (b >= input.shape[0]) | (b != b.floor())).any()):
            raise ValueError(
                f"{op}: 'rois[:, 0]' must hold integer batch indices in [0, {input.shape[0] - 1}], "
                f"got values in [{float(b.min())}, {float(b.max())}]"
            )
    return dtype
