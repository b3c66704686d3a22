"""Classification accuracy (logged by heads next to their losses)."""

from __future__ import annotations

import torch
from torch import nn


def accuracy(
    pred: torch.Tensor, target: torch.Tensor, topk: int | tuple[int, ...] = 1, thresh: float | None = None
) -> torch.Tensor | list[torch.Tensor]:
    """Top-k accuracy in percent of scores ``(N, C)`` against labels ``(N,)``; a ``(1,)`` tensor per k
    (a single one for an int ``topk``). With ``thresh`` a prediction also needs a score above it."""
    single = isinstance(topk, int)
    topks = (topk,) if single else tuple(topk)
    maxk = max(topks)
    if pred.size(0) == 0:
        res = [pred.new_tensor(0.0) for _ in topks]
        return res[0] if single else res
    if maxk > pred.size(1):
        raise ValueError(f"accuracy: topk {maxk} exceeds the {pred.size(1)} classes")
    pred_value, pred_label = pred.topk(maxk, dim=1)
    pred_label = pred_label.t()
    correct = pred_label.eq(target.view(1, -1).expand_as(pred_label))
    if thresh is not None:
        correct = correct & (pred_value > thresh).t()
    res = [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / pred.size(0)) for k in topks]
    return res[0] if single else res


class Accuracy(nn.Module):
    """Module form of :func:`accuracy`."""

    def __init__(self, topk: int | tuple[int, ...] = (1,), thresh: float | None = None) -> None:
        super().__init__()
        self.topk, self.thresh = topk, thresh

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return accuracy(pred, target, self.topk, self.thresh)
