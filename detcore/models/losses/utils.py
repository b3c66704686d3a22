"""Loss reduction helpers shared by every loss."""

from __future__ import annotations

import functools
from typing import Callable

import torch

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str | None, where: str) -> None:
    if reduction not in (None,) + REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``none`` -> as is; ``mean`` -> mean; ``sum`` -> sum."""
    check_reduction(reduction, "reduce_loss")
    if reduction == "none":
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def weight_reduce_loss(
    loss: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiply element-wise ``loss`` by ``weight`` (broadcast) and reduce.

    With ``avg_factor`` the ``mean`` is ``sum / (avg_factor + eps)``; ``sum`` with ``avg_factor`` is an
    error; ``none`` ignores it.
    """
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return reduce_loss(loss, reduction)
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction != "none":
        raise ValueError('weight_reduce_loss: avg_factor can not be used with reduction="sum"')
    return loss


def weighted_loss(loss_func: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Turn ``loss_func(pred, target, **kw) -> element-wise loss`` into
    ``f(pred, target, weight=None, reduction="mean", avg_factor=None, **kw)``."""

    @functools.wraps(loss_func)
    def wrapper(
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        avg_factor: float | None = None,
        **kwargs,
    ) -> torch.Tensor:
        return weight_reduce_loss(loss_func(pred, target, **kwargs), weight, reduction, avg_factor)

    return wrapper
