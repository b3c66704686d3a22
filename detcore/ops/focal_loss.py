"""Sigmoid focal loss front (mmcv semantics)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import check_dim, check_float, check_same, check_tensor
from ._precision import cast, compute_dtype, no_autocast

_REDUCTIONS = ("none", "mean", "sum")


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    weight: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss on per-class sigmoid logits.

    Args:
        logits: (N, C) raw scores.
        targets: (N,) long labels in [0, C]; C means background (every class is a negative).
        gamma, alpha: focusing and balancing parameters.
        weight: optional (N,) per-sample weight multiplying each row of the loss.
        reduction: "none" -> (N, C); "sum" -> scalar sum; "mean" -> sum / N (as mmcv does).

    float16/bfloat16 logits are computed and returned in float32 (a loss, like autocast's policy).
    """
    op = "sigmoid_focal_loss"
    check_tensor(op, "logits", logits)
    check_tensor(op, "targets", targets)
    check_float(op, "logits", logits)
    check_dim(op, "logits", logits, 2, "(N, C)")
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"{op}: 'targets' must have shape ({logits.shape[0]},), got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"{op}: 'targets' must be an integer (long) tensor, got dtype {targets.dtype}")
    check_same(op, "logits", logits, "targets", targets, dtype=False)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: 'reduction' must be one of {_REDUCTIONS}, got {reduction!r}")
    if weight is not None:
        check_tensor(op, "weight", weight)
        check_float(op, "weight", weight)
        check_same(op, "logits", logits, "weight", weight, dtype=False)
        if weight.shape != (logits.shape[0],):
            raise ValueError(
                f"{op}: 'weight' must have shape ({logits.shape[0]},), got {tuple(weight.shape)}"
            )
    if targets.numel() and targets.device.type == "cpu" and not torch.compiler.is_compiling():
        if int(targets.min()) < 0 or int(targets.max()) > logits.shape[1]:
            raise ValueError(
                f"{op}: 'targets' must lie in [0, {logits.shape[1]}] ({logits.shape[1]} = background), "
                f"got values in [{int(targets.min())}, {int(targets.max())}]"
            )
    targets = targets.long()
    dtype = compute_dtype(op, [("logits", logits), ("weight", weight)])
    logits, weight = cast(logits, dtype), cast(weight, dtype)
    with no_autocast(logits.device):
        if use_native():
            loss = torch.ops.detcore.sigmoid_focal_loss(
                logits.contiguous(),
                targets.contiguous(),
                None if weight is None else weight.contiguous(),
                float(gamma),
                float(alpha),
            )
        else:
            loss = _ref.sigmoid_focal_loss(logits, targets, weight, float(gamma), float(alpha))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(logits.shape[0], 1)
