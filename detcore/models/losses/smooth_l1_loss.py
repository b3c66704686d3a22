"""Smooth L1, L1 and Balanced L1 losses for box regression."""

from __future__ import annotations

import numpy as np
import torch

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weighted_loss


def _abs_diff(
    pred: torch.Tensor, target: torch.Tensor, where: str, beta: float | None = None
) -> torch.Tensor | None:
    """``|pred - target|`` after the checks the regression losses share (``beta > 0`` when given, equal
    shapes); ``None`` for an empty target (whose loss is ``pred.sum() * 0``, keeping the graph)."""
    if beta is not None and beta <= 0:
        raise ValueError(f"{where}: beta must be > 0, got {beta}")
    if target.numel() == 0:
        return None
    if pred.size() != target.size():
        raise ValueError(
            f"{where}: pred {tuple(pred.size())} and target {tuple(target.size())} differ in shape"
        )
    return torch.abs(pred - target)


@weighted_loss
def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Element-wise ``0.5 d^2 / beta`` if ``d < beta`` else ``d - 0.5 beta`` with ``d = |pred - target|``."""
    diff = _abs_diff(pred, target, "smooth_l1_loss", beta)
    if diff is None:
        return pred.sum() * 0
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


@weighted_loss
def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise ``|pred - target|``."""
    diff = _abs_diff(pred, target, "l1_loss")
    return pred.sum() * 0 if diff is None else diff


@weighted_loss
def balanced_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, alpha: float = 0.5, gamma: float = 1.5
) -> torch.Tensor:
    """Balanced L1 (Libra R-CNN): with ``b = e^(gamma / alpha) - 1``, ``d = |pred - target|``:
    ``alpha / b (b d + 1) ln(b d / beta + 1) - alpha d`` if ``d < beta``, else
    ``gamma d + gamma / b - alpha beta``."""
    diff = _abs_diff(pred, target, "balanced_l1_loss", beta)
    if diff is None:
        return pred.sum() * 0
    b = np.e ** (gamma / alpha) - 1
    return torch.where(
        diff < beta,
        alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff,
        gamma * diff + gamma / b - alpha * beta,
    )


class SmoothL1Loss(BaseLoss):
    """Smooth L1 with threshold ``beta``. ``forward(pred, target, weight=None, avg_factor=None,
    reduction_override=None)``; all ``(N, 4)``."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.beta = beta

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return smooth_l1_loss(pred, target, weight, beta=self.beta, **kwargs)


class L1Loss(BaseLoss):
    """L1 loss. ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``."""

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return l1_loss(pred, target, weight, **kwargs)


class BalancedL1Loss(BaseLoss):
    """Balanced L1 loss (Libra R-CNN) with ``alpha``, ``gamma``, ``beta``."""

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 1.5,
        beta: float = 1.0,
        reduction: str = "mean",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(reduction, loss_weight)
        self.alpha, self.gamma, self.beta = alpha, gamma, beta

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return balanced_l1_loss(
            pred, target, weight, alpha=self.alpha, gamma=self.gamma, beta=self.beta, **kwargs
        )


class MSELoss(BaseLoss):
    """Mean squared error.

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``."""

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return mse_loss(pred, target, weight, **kwargs)


@weighted_loss
def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise ``(pred - target)^2``."""
    return (pred - target) ** 2
