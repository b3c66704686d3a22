"""Gaussian focal loss (CornerNet / CenterNet): focal loss against a heatmap of Gaussian peaks."""

from __future__ import annotations

import torch

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weighted_loss


@weighted_loss
def gaussian_focal_loss(
    pred: torch.Tensor, gaussian_target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Element-wise loss of probabilities ``pred`` against a target heatmap in ``[0, 1]`` (same shape).

    At a peak (target exactly 1): ``-log(p) (1 - p)^alpha``; elsewhere the negative term
    ``-log(1 - p) p^alpha`` is damped by ``(1 - target)^gamma``, so pixels near a peak count less.
    ``pred`` are probabilities (after a sigmoid), not logits.
    """
    if pred.shape != gaussian_target.shape:
        raise ValueError(
            f"gaussian_focal_loss: pred {tuple(pred.shape)} and target {tuple(gaussian_target.shape)} "
            "differ in shape"
        )
    pos_weights = gaussian_target.eq(1).to(pred.dtype)
    neg_weights = (1 - gaussian_target).pow(gamma)
    pos_loss = -(pred + eps).log() * (1 - pred).pow(alpha) * pos_weights
    neg_loss = -(1 - pred + eps).log() * pred.pow(alpha) * neg_weights
    return pos_loss + neg_loss


class GaussianFocalLoss(BaseLoss):
    """:func:`gaussian_focal_loss` as a module.

    ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``: ``pred``
    probabilities and ``target`` heatmap of the same shape (e.g. ``(B, C, H, W)``); CenterNet passes
    ``avg_factor`` = the number of peaks.

    Args:
        alpha: the focusing exponent on the prediction.
        gamma: the exponent of ``1 - target`` that damps negatives near a peak.
        reduction / loss_weight: see :class:`BaseLoss`.
    """

    def __init__(self, alpha: float = 2.0, gamma: float = 4.0, reduction: str = "mean",
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return gaussian_focal_loss(pred, target, weight, alpha=self.alpha, gamma=self.gamma, **kwargs)
