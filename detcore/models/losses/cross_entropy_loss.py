"""Cross-entropy losses: softmax, sigmoid (binary per class) and per-class mask BCE."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F

from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.utils import weight_reduce_loss


def _ce_form(
    parts: Callable[..., tuple[torch.Tensor, torch.Tensor | None, Callable[[], float]]],
) -> Callable[..., torch.Tensor]:
    """Turn ``parts(pred, label, weight, class_weight, ignore_index) -> (element-wise loss, weight,
    count of non-ignored entries)`` into ``f(pred, label, weight=None, reduction="mean",
    avg_factor=None, class_weight=None, ignore_index=-100, avg_non_ignore=False)``; with
    ``avg_non_ignore`` the ``mean`` is over the non-ignored entries."""

    @functools.wraps(parts)
    def loss(
        pred: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        avg_factor: float | None = None,
        class_weight: torch.Tensor | None = None,
        ignore_index: int | None = -100,
        avg_non_ignore: bool = False,
    ) -> torch.Tensor:
        ignore_index = -100 if ignore_index is None else ignore_index
        out, weight, num_valid = parts(pred, label, weight, class_weight, ignore_index)
        if avg_factor is None and avg_non_ignore and reduction == "mean":
            avg_factor = num_valid()
        return weight_reduce_loss(out, None if weight is None else weight.float(), reduction, avg_factor)

    return loss


@_ce_form
def cross_entropy(pred: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None,
                  class_weight: torch.Tensor | None, ignore_index: int):
    """Softmax cross entropy of logits ``(N, C)`` against labels ``(N,)``; ``weight`` is per sample."""
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction="none", ignore_index=ignore_index)
    return loss, weight, lambda: label.numel() - (label == ignore_index).sum().item()


def _expand_onehot_labels(
    labels: torch.Tensor, label_weights: torch.Tensor | None, label_channels: int, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bin_labels = labels.new_full((labels.size(0), label_channels), 0)
    valid_mask = (labels >= 0) & (labels != ignore_index)
    inds = torch.nonzero(valid_mask & (labels < label_channels), as_tuple=False).view(-1)
    if inds.numel() > 0:
        bin_labels[inds, labels[inds]] = 1
    valid_mask = valid_mask.view(-1, 1).expand(labels.size(0), label_channels).float()
    if label_weights is None:
        bin_label_weights = valid_mask
    else:
        bin_label_weights = label_weights.view(-1, 1).repeat(1, label_channels) * valid_mask
    return bin_labels, bin_label_weights, valid_mask


@_ce_form
def binary_cross_entropy(pred: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None,
                         class_weight: torch.Tensor | None, ignore_index: int):
    """Sigmoid BCE of logits ``(N, C)``. ``label`` is ``(N,)`` class indices (expanded to one-hot;
    index ``C`` = background = all zeros) or already ``(N, C)`` binary targets."""
    if pred.dim() != label.dim():
        label, weight, valid_mask = _expand_onehot_labels(label, weight, pred.size(-1), ignore_index)
    else:
        valid_mask = ((label >= 0) & (label != ignore_index)).float()
        weight = weight * valid_mask if weight is not None else valid_mask
    loss = F.binary_cross_entropy_with_logits(pred, label.float(), pos_weight=class_weight, reduction="none")
    return loss, weight, lambda: valid_mask.sum().item()


def mask_cross_entropy(
    pred: torch.Tensor,
    target: torch.Tensor,
    label: torch.Tensor,
    reduction: str = "mean",
    avg_factor: float | None = None,
    class_weight: torch.Tensor | None = None,
    ignore_index: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """Mask BCE: logits ``(R, C, H, W)``, targets ``(R, H, W)``, each RoI's class ``label`` ``(R,)``
    selects its channel; mean over all pixels; returns a ``(1,)`` tensor."""
    if ignore_index is not None:
        raise ValueError("mask_cross_entropy does not support ignore_index")
    if reduction != "mean" or avg_factor is not None:
        raise ValueError("mask_cross_entropy supports only reduction='mean' without avg_factor")
    inds = torch.arange(pred.size(0), dtype=torch.long, device=pred.device)
    pred_slice = pred[inds, label.long()]
    return F.binary_cross_entropy_with_logits(
        pred_slice, target.float(), weight=class_weight, reduction="mean"
    )[None]


class CrossEntropyLoss(BaseLoss):
    """Cross entropy: softmax (default), sigmoid (``use_sigmoid``) or mask (``use_mask``).

    ``forward(cls_score, label, weight=None, avg_factor=None, reduction_override=None, ignore_index=None)``;
    ``weight`` is per sample (the sigmoid form spreads it over the classes); for masks
    ``forward(mask_pred (R, C, H, W), mask_targets (R, H, W), labels (R,))``.
    ``avg_non_ignore`` averages over the non-ignored entries only.
    """

    weight_layout = "as_is"

    def __init__(
        self,
        use_sigmoid: bool = False,
        use_mask: bool = False,
        reduction: str = "mean",
        class_weight: Sequence[float] | None = None,
        ignore_index: int | None = None,
        loss_weight: float = 1.0,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__(reduction, loss_weight)
        if use_sigmoid and use_mask:
            raise ValueError("CrossEntropyLoss: use_sigmoid and use_mask exclude each other")
        self.use_sigmoid = use_sigmoid
        self.use_mask = use_mask
        self.class_weight = class_weight
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        if ignore_index is not None and not avg_non_ignore and reduction == "mean":
            warnings.warn(
                "CrossEntropyLoss: with ignore_index, consider avg_non_ignore=True to average "
                "over non-ignored entries only",
                stacklevel=2,
            )
        if use_sigmoid:
            self.cls_criterion = binary_cross_entropy
        elif use_mask:
            self.cls_criterion = mask_cross_entropy
        else:
            self.cls_criterion = cross_entropy

    def extra_repr(self) -> str:
        return (
            f"use_sigmoid={self.use_sigmoid}, use_mask={self.use_mask}, loss_weight={self.loss_weight}, "
            f"avg_non_ignore={self.avg_non_ignore}"
        )

    def _loss(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if ignore_index is None:
            ignore_index = self.ignore_index
        class_weight = cls_score.new_tensor(self.class_weight) if self.class_weight is not None else None
        return self.cls_criterion(
            cls_score, label, weight, class_weight=class_weight, ignore_index=ignore_index,
            avg_non_ignore=self.avg_non_ignore, **kwargs,
        )
