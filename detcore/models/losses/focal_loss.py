"""Sigmoid focal loss (Lin et al., 2017)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weight_reduce_loss


def _shape_weight(weight: torch.Tensor | None, loss: torch.Tensor) -> torch.Tensor | None:
    if weight is None or weight.shape == loss.shape:
        return weight
    if weight.size(0) == loss.size(0) and weight.numel() == loss.size(0):
        return weight.view(-1, 1)
    if weight.numel() != loss.numel():
        raise ValueError(f"focal loss: weight {tuple(weight.shape)} does not fit loss {tuple(loss.shape)}")
    return weight.view(loss.size(0), -1)


def _binary_focal(prob: torch.Tensor, bce: torch.Tensor, target: torch.Tensor, gamma: float,
                  alpha: float) -> torch.Tensor:
    """The per-element binary cross-entropy ``bce`` scaled by ``alpha_t (1 - p_t)^gamma``."""
    pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return bce * focal_weight


def _focal_form(elementwise: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Turn ``elementwise(pred, target, gamma, alpha) -> (N, C) loss`` into the focal loss
    ``f(pred, target, weight=None, gamma=2.0, alpha=0.25, reduction="mean", avg_factor=None)``
    (a weight ``(N,)`` applies to every class of its row)."""

    @functools.wraps(elementwise)
    def loss(
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        gamma: float = 2.0,
        alpha: float = 0.25,
        reduction: str = "mean",
        avg_factor: float | None = None,
    ) -> torch.Tensor:
        out = elementwise(pred, target, gamma, alpha)
        return weight_reduce_loss(out, _shape_weight(weight, out), reduction, avg_factor)

    return loss


@_focal_form
def py_sigmoid_focal_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float):
    """Focal loss of logits ``(N, C)`` against binary targets ``(N, C)`` (pure PyTorch)."""
    target = target.type_as(pred)
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    return _binary_focal(pred.sigmoid(), bce, target, gamma, alpha)


@_focal_form
def py_focal_loss_with_prob(pred: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float):
    """Focal loss of probabilities ``(N, C)`` (already sigmoid-activated); labels ``(N,)`` or ``(N, C)``."""
    if pred.dim() != target.dim():
        target = F.one_hot(target, num_classes=pred.size(1) + 1)[:, : pred.size(1)]
    target = target.type_as(pred)
    return _binary_focal(pred, F.binary_cross_entropy(pred, target, reduction="none"), target, gamma, alpha)


@_focal_form
def sigmoid_focal_loss(pred: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float):
    """Focal loss of logits ``(N, C)`` against labels ``(N,)`` in ``[0, C]`` (``C`` = background),
    computed by :func:`detcore.ops.sigmoid_focal_loss`."""
    from detcore.ops import sigmoid_focal_loss as focal_op

    return focal_op(pred.contiguous(), target.contiguous().long(), gamma, alpha, None, "none")


class FocalLoss(BaseLoss):
    """Sigmoid focal loss: ``-alpha_t (1 - p_t)^gamma log(p_t)`` per class.

    ``forward(pred (N, C) logits, target (N,) labels with C = background or (N, C) binary, weight=None,
    avg_factor=None, reduction_override=None)``; a weight ``(N,)`` applies to every class of its row.
    ``activated=True`` takes probabilities instead of logits.
    """

    #: balances easy negatives itself: an anchor head ignores a sampler in its train_cfg
    handles_imbalance = True

    def __init__(
        self,
        use_sigmoid: bool = True,
        gamma: float = 2.0,
        alpha: float = 0.25,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        activated: bool = False,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if not use_sigmoid:
            raise ValueError("FocalLoss: only the sigmoid focal loss exists (use_sigmoid=True)")
        self.use_sigmoid = use_sigmoid
        self.gamma, self.alpha = gamma, alpha
        self.activated = activated

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, loss_weight={self.loss_weight}"

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs: Any):
        if self.activated:
            fn = py_focal_loss_with_prob
        elif pred.dim() == target.dim():
            fn = py_sigmoid_focal_loss
        else:
            fn = sigmoid_focal_loss
        return fn(pred, target, weight, gamma=self.gamma, alpha=self.alpha, **kwargs)
