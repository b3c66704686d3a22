"""IoU-based box regression losses: IoU (linear/square/log), GIoU, DIoU, CIoU, Bounded IoU.

Boxes are ``(N, 4)`` xyxy; the loss is per box (``(N,)``), so a weight ``(N, 4)`` is averaged over
its last dimension first, as the reference does.
"""

from __future__ import annotations

import math
import warnings

import torch

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weighted_loss


def _aligned_overlaps(pred: torch.Tensor, target: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    from detcore.ops import box_overlaps

    return box_overlaps(pred, target, mode=mode, aligned=True, eps=eps)


@weighted_loss
def iou_loss(
    pred: torch.Tensor, target: torch.Tensor, linear: bool = False, mode: str = "log", eps: float = 1e-6
) -> torch.Tensor:
    """``1 - IoU`` (linear), ``1 - IoU^2`` (square) or ``-ln IoU`` (log), IoU clamped to ``>= eps``."""
    if mode not in ("linear", "square", "log"):
        raise ValueError(f"iou_loss: mode must be linear, square or log, got {mode!r}")
    if linear:
        mode = "linear"
    ious = _aligned_overlaps(pred, target, "iou", 1e-6).clamp(min=eps)
    if mode == "linear":
        return 1 - ious
    if mode == "square":
        return 1 - ious**2
    return -ious.log()


@weighted_loss
def giou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - GIoU``."""
    return 1 - _aligned_overlaps(pred, target, "giou", eps)


def _enclose_and_centres(pred: torch.Tensor, target: torch.Tensor, eps: float):
    enclose_wh = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).clamp(min=0)
    c2 = enclose_wh[:, 0] ** 2 + enclose_wh[:, 1] ** 2 + eps
    left = ((target[:, 0] + target[:, 2]) - (pred[:, 0] + pred[:, 2])) ** 2 / 4
    right = ((target[:, 1] + target[:, 3]) - (pred[:, 1] + pred[:, 3])) ** 2 / 4
    return c2, left + right


def _plain_iou(pred: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    ag = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    return overlap / (ap + ag - overlap + eps)


@weighted_loss
def diou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``1 - IoU + rho^2 / c^2`` (centre distance over the enclosing box's diagonal, squared)."""
    c2, rho2 = _enclose_and_centres(pred, target, eps)
    return 1 - _plain_iou(pred, target, eps) + rho2 / c2


@weighted_loss
def ciou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """DIoU plus the aspect-ratio term ``alpha * v``."""
    ious = _plain_iou(pred, target, eps)
    c2, rho2 = _enclose_and_centres(pred, target, eps)
    w1, h1 = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    w2, h2 = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
    v = (4 / math.pi**2) * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
    with torch.no_grad():
        alpha = (ious > 0.5).float() * v / (1 - ious + v)
    return 1 - (ious - (rho2 / c2 + alpha * v))


@weighted_loss
def bounded_iou_loss(
    pred: torch.Tensor, target: torch.Tensor, beta: float = 0.2, eps: float = 1e-3
) -> torch.Tensor:
    """Bounded IoU (Tychsen-Smith & Petersson, 2018): per box ``(N, 4)`` smooth-L1 (``beta``) of the
    four IoU bounds for centre x/y and width/height."""
    pred_ctrx = (pred[:, 0] + pred[:, 2]) * 0.5
    pred_ctry = (pred[:, 1] + pred[:, 3]) * 0.5
    pred_w = pred[:, 2] - pred[:, 0]
    pred_h = pred[:, 3] - pred[:, 1]
    with torch.no_grad():
        target_ctrx = (target[:, 0] + target[:, 2]) * 0.5
        target_ctry = (target[:, 1] + target[:, 3]) * 0.5
        target_w = target[:, 2] - target[:, 0]
        target_h = target[:, 3] - target[:, 1]
    dx = target_ctrx - pred_ctrx
    dy = target_ctry - pred_ctry
    loss_dx = 1 - torch.max((target_w - 2 * dx.abs()) / (target_w + 2 * dx.abs() + eps), torch.zeros_like(dx))
    loss_dy = 1 - torch.max((target_h - 2 * dy.abs()) / (target_h + 2 * dy.abs() + eps), torch.zeros_like(dy))
    loss_dw = 1 - torch.min(target_w / (pred_w + eps), pred_w / (target_w + eps))
    loss_dh = 1 - torch.min(target_h / (pred_h + eps), pred_h / (target_h + eps))
    loss_comb = torch.stack([loss_dx, loss_dy, loss_dw, loss_dh], dim=-1).view(loss_dx.size(0), -1)
    return torch.where(loss_comb < beta, 0.5 * loss_comb * loss_comb / beta, loss_comb - 0.5 * beta)


class _IoUFamily(BaseLoss):
    """IoU-type losses: one loss per box, a weight ``(N, 4)`` averaged per box, and an all-zero weight
    short-cut to a zero that keeps the graph (as the reference)."""

    weight_layout = "box"
    zero_weight_shortcut = True

    def __init__(self, eps: float, reduction: str, loss_weight: float) -> None:
        super().__init__(reduction, loss_weight)
        self.eps = eps

    def extra_repr(self) -> str:
        return f"eps={self.eps}, loss_weight={self.loss_weight}"


class IoULoss(_IoUFamily):
    """IoU loss in ``mode`` ``log`` (default, ``-ln IoU``), ``linear`` (``1 - IoU``) or ``square``."""

    def __init__(
        self,
        linear: bool = False,
        eps: float = 1e-6,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        mode: str = "log",
    ) -> None:
        super().__init__(eps, reduction, loss_weight)
        if mode not in ("linear", "square", "log"):
            raise ValueError(f"IoULoss: mode must be linear, square or log, got {mode!r}")
        if linear:
            warnings.warn("IoULoss: linear=True is deprecated, use mode='linear'", stacklevel=2)
            mode = "linear"
        self.mode = mode

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return iou_loss(pred, target, weight, mode=self.mode, eps=self.eps, **kwargs)


class GIoULoss(_IoUFamily):
    """``1 - GIoU`` (Rezatofighi et al., 2019)."""

    def __init__(self, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(eps, reduction, loss_weight)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return giou_loss(pred, target, weight, eps=self.eps, **kwargs)


class DIoULoss(GIoULoss):
    """``1 - IoU + rho^2 / c^2`` (Zheng et al., 2020)."""

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return diou_loss(pred, target, weight, eps=self.eps, **kwargs)


class CIoULoss(GIoULoss):
    """DIoU plus an aspect-ratio consistency term (Zheng et al., 2020)."""

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return ciou_loss(pred, target, weight, eps=self.eps, **kwargs)


class BoundedIoULoss(_IoUFamily):
    """Bounded IoU loss; its element-wise loss is ``(N, 4)``, so ``weight`` may be ``(N, 4)``."""

    weight_layout = "element"

    def __init__(
        self, beta: float = 0.2, eps: float = 1e-3, reduction: str = "mean", loss_weight: float = 1.0
    ) -> None:
        super().__init__(eps, reduction, loss_weight)
        self.beta = beta

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, **kwargs):
        return bounded_iou_loss(pred, target, weight, beta=self.beta, eps=self.eps, **kwargs)
