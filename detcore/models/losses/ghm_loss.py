"""Gradient Harmonizing Mechanism losses (Li et al., 2019): GHM-C and GHM-R.

Each example's loss is weighted by the inverse density of examples with a similar gradient norm
(counted in ``bins`` equal bins of ``[0, 1]``; with ``momentum`` the counts are moving averages kept
in the ``acc_sum`` buffer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.losses.utils import check_reduction, weight_reduce_loss


def _expand_onehot_labels(
    labels: torch.Tensor, label_weights: torch.Tensor, label_channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    bin_labels = labels.new_full((labels.size(0), label_channels), 0)
    inds = torch.nonzero((labels >= 0) & (labels < label_channels), as_tuple=False).view(-1)
    if inds.numel() > 0:
        bin_labels[inds, labels[inds]] = 1
    bin_label_weights = label_weights.view(-1, 1).expand(label_weights.size(0), label_channels)
    return bin_labels, bin_label_weights


class _GHMBase(nn.Module):
    def __init__(
        self, bins: int, momentum: float, loss_weight: float, reduction: str, last_edge: float
    ) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"{type(self).__name__}: bins must be >= 1, got {bins}")
        check_reduction(reduction, type(self).__name__)
        self.bins, self.momentum = bins, momentum
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] = last_edge
        self.register_buffer("edges", edges)
        if momentum > 0:
            self.register_buffer("acc_sum", torch.zeros(bins))
        self.loss_weight, self.reduction = loss_weight, reduction

    def _density_weights(self, g: torch.Tensor, valid: torch.Tensor, tot: float) -> torch.Tensor:
        weights = torch.zeros_like(g)
        n = 0
        for i in range(self.bins):
            inds = (g >= self.edges[i]) & (g < self.edges[i + 1]) & valid
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if self.momentum > 0:
                    self.acc_sum[i] = self.momentum * self.acc_sum[i] + (1 - self.momentum) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        return weights / n if n > 0 else weights


class GHMC(_GHMBase):
    """GHM classification loss on sigmoid logits. ``forward(pred (N, C), target (N,) labels with C =
    background or (N, C) binary, label_weight (N,) or (N, C), reduction_override=None)``."""

    #: balances easy negatives itself: an anchor head ignores a sampler in its train_cfg
    handles_imbalance = True

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0,
        use_sigmoid: bool = True,
        loss_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        if not use_sigmoid:
            raise ValueError("GHMC: only the sigmoid form exists (use_sigmoid=True)")
        super().__init__(bins, momentum, loss_weight, reduction, last_edge=1 + 1e-6)
        self.use_sigmoid = use_sigmoid

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        label_weight: torch.Tensor,
        reduction_override: str | None = None,
        **kwargs,
    ) -> torch.Tensor:
        check_reduction(reduction_override, "GHMC.forward")
        reduction = reduction_override if reduction_override else self.reduction
        if pred.dim() != target.dim():
            target, label_weight = _expand_onehot_labels(target, label_weight, pred.size(-1))
        target, label_weight = target.float(), label_weight.float()
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        weights = self._density_weights(g, valid, tot)
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        return weight_reduce_loss(loss, weights, reduction=reduction, avg_factor=tot) * self.loss_weight


class GHMR(_GHMBase):
    """GHM regression loss on the authentic smooth L1 ``sqrt(d^2 + mu^2) - mu``.
    ``forward(pred (N, 4), target (N, 4), label_weight (N, 4), avg_factor=None, reduction_override=None)``."""

    def __init__(
        self,
        mu: float = 0.02,
        bins: int = 10,
        momentum: float = 0,
        loss_weight: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(bins, momentum, loss_weight, reduction, last_edge=1e3)
        self.mu = mu

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        label_weight: torch.Tensor,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> torch.Tensor:
        check_reduction(reduction_override, "GHMR.forward")
        reduction = reduction_override if reduction_override else self.reduction
        mu = self.mu
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        valid = label_weight > 0
        tot = max(label_weight.float().sum().item(), 1.0)
        weights = self._density_weights(g, valid, tot)
        return weight_reduce_loss(loss, weights, reduction=reduction, avg_factor=tot) * self.loss_weight
