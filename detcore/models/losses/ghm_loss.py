"""Gradient Harmonizing Mechanism losses (Li et al., 2019): GHM-C and GHM-R.

Each example's loss is weighted by the inverse density of examples with a similar gradient norm
(counted in ``bins`` equal bins of ``[0, 1]``; with ``momentum`` the counts are moving averages kept
in the ``acc_sum`` buffer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weight_reduce_loss


def _onehot_labels(labels: torch.Tensor, label_channels: int) -> torch.Tensor:
    """Labels ``(N,)`` -> binary targets ``(N, label_channels)`` (labels outside ``[0, C)``: all zero)."""
    bin_labels = labels.new_full((labels.size(0), label_channels), 0)
    inds = torch.nonzero((labels >= 0) & (labels < label_channels), as_tuple=False).view(-1)
    if inds.numel() > 0:
        bin_labels[inds, labels[inds]] = 1
    return bin_labels


def _reduce(loss: torch.Tensor, weights: torch.Tensor, reduction: str, tot: float) -> torch.Tensor:
    """``mean``: the weighted sum over ``tot`` (the reference); ``sum`` and ``none`` as usual (the
    reference refuses ``sum``, which it passes together with its ``avg_factor``)."""
    avg_factor = tot if reduction == "mean" else None
    return weight_reduce_loss(loss, weights, reduction=reduction, avg_factor=avg_factor)


class _GHMBase(BaseLoss):
    # the losses are averaged by their own count of valid entries, as the reference does
    uses_avg_factor = False

    def __init__(
        self, bins: int, momentum: float, loss_weight: float, reduction: str, last_edge: float
    ) -> None:
        super().__init__(reduction, loss_weight)
        if bins < 1:
            raise ValueError(f"{type(self).__name__}: bins must be >= 1, got {bins}")
        self.bins, self.momentum = bins, momentum
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] = last_edge
        self.register_buffer("edges", edges)
        if momentum > 0:
            self.register_buffer("acc_sum", torch.zeros(bins))

    @staticmethod
    def _full_weight(weight: torch.Tensor | None, pred: torch.Tensor) -> torch.Tensor:
        """The fitted weight spread over every entry of ``pred`` (all ones when absent)."""
        if weight is None:
            return torch.ones_like(pred)
        return weight.expand_as(pred).float()

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
    background or (N, C) binary, weight (N,) or (N, C) label weights, reduction_override=None)``;
    ``avg_factor`` is accepted and not used (the loss is averaged over the entries of positive weight)."""

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

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
              reduction: str, avg_factor: float | None = None, **kwargs) -> torch.Tensor:
        if pred.dim() != target.dim():
            target = _onehot_labels(target, pred.size(-1))
        target, label_weight = target.float(), self._full_weight(weight, pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        weights = self._density_weights(g, valid, tot)
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        return _reduce(loss, weights, reduction, tot)


class GHMR(_GHMBase):
    """GHM regression loss on the authentic smooth L1 ``sqrt(d^2 + mu^2) - mu``.
    ``forward(pred (N, 4), target (N, 4), weight (N, 4) or (N,), reduction_override=None)``; ``avg_factor``
    is accepted and not used (the loss is averaged over the sum of the weights)."""

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

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
              reduction: str, avg_factor: float | None = None, **kwargs) -> torch.Tensor:
        mu = self.mu
        label_weight = self._full_weight(weight, pred)
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        valid = label_weight > 0
        tot = max(label_weight.sum().item(), 1.0)
        weights = self._density_weights(g, valid, tot)
        return _reduce(loss, weights, reduction, tot)
