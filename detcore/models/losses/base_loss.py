"""``BaseLoss``: the preamble every loss module shares.

``loss(pred, target, weight=None, avg_factor=None, reduction_override=None, **kwargs)``:

1. the reduction is ``reduction_override`` when given, else the module's ``reduction`` (both checked);
2. ``weight`` is fitted to ``pred`` as the loss's :attr:`~BaseLoss.weight_layout` says (a per-row
   weight ``(N,)`` broadcasts over the columns of an element-wise loss ``(N, K)``, a per-coordinate
   weight ``(N, 4)`` of a per-box loss is averaged to ``(N,)``, ...);
3. the subclass's ``_loss`` computes the weighted, reduced loss (``mean`` with ``avg_factor`` is
   ``sum / avg_factor``), and the result is multiplied by ``loss_weight``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detcore.models.losses.utils import check_reduction

#: how a loss's ``weight`` relates to ``pred`` (see :meth:`BaseLoss.fit_weight`)
WEIGHT_LAYOUTS = ("element", "box", "as_is")


class BaseLoss(nn.Module):
    """Base of the loss modules: ``reduction`` and ``loss_weight``, and the forward preamble.

    Args:
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        loss_weight: the factor the loss is multiplied by.

    Subclasses implement :meth:`_loss` and may set the class attributes below.
    """

    #: ``"element"``: the element-wise loss has ``pred``'s shape and ``weight`` is brought to it;
    #: ``"box"``: one loss per row of ``pred`` ``(N, 4)``, a weight ``(N, 4)`` is averaged per row;
    #: ``"as_is"``: the functional form interprets ``weight`` itself (cross-entropy: per sample, or
    #: the labels of the mask form).
    weight_layout: str = "element"
    #: whether ``mean`` with ``avg_factor`` divides the sum by it (GHM losses average by their own count)
    uses_avg_factor: bool = True
    #: whether the loss balances easy negatives itself (an anchor head then ignores its sampler)
    handles_imbalance: bool = False
    #: an all-zero ``weight`` gives ``(pred * weight).sum()`` without computing the loss (the IoU losses)
    zero_weight_shortcut: bool = False

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        check_reduction(reduction, type(self).__name__)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
        reduction_override: str | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """``loss_weight`` times the subclass's loss of ``pred`` against ``target`` (see the module doc)."""
        reduction = self.resolve_reduction(reduction_override)
        if self.zero_weight_shortcut and weight is not None and reduction != "none" \
                and not torch.any(weight > 0):
            if pred.dim() == weight.dim() + 1:
                weight = weight.unsqueeze(1)
            return (pred * weight).sum()  # zero, but keeps the graph
        weight = self.fit_weight(weight, pred)
        return self.loss_weight * self._loss(
            pred, target, weight, reduction=reduction, avg_factor=avg_factor, **kwargs
        )

    def resolve_reduction(self, reduction_override: str | None) -> str:
        """``reduction_override`` when given (checked), else the module's ``reduction``."""
        check_reduction(reduction_override, f"{type(self).__name__}.forward")
        return reduction_override if reduction_override else self.reduction

    def fit_weight(self, weight: torch.Tensor | None, pred: torch.Tensor) -> torch.Tensor | None:
        """``weight`` in the shape the loss multiplies by (see :attr:`weight_layout`); a clear error
        when it cannot fit ``pred`` ``(N, ...)``."""
        if weight is None or self.weight_layout == "as_is":
            return weight
        name = type(self).__name__
        if self.weight_layout == "box":
            if weight.dim() > 1:
                if weight.shape != pred.shape:
                    raise ValueError(f"{name}: weight {tuple(weight.shape)} vs pred {tuple(pred.shape)}")
                weight = weight.mean(-1)
            if weight.shape != pred.shape[:1]:
                raise ValueError(f"{name}: weight {tuple(weight.shape)} vs {pred.size(0)} boxes of pred")
            return weight
        if weight.shape == pred.shape:
            return weight
        if pred.dim() > 1 and weight.numel() == pred.size(0) and weight.size(0) == pred.size(0):
            return weight.reshape((pred.size(0),) + (1,) * (pred.dim() - 1))  # one weight per row
        if weight.numel() == pred.numel():
            return weight.reshape(pred.shape)
        if weight.dim() == pred.dim() and all(w in (1, p) for w, p in zip(weight.shape, pred.shape)):
            return weight  # broadcasts (e.g. one weight per column)
        raise ValueError(f"{name}: weight {tuple(weight.shape)} does not fit pred {tuple(pred.shape)}")

    def _loss(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        reduction: str,
        avg_factor: float | torch.Tensor | None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The weighted, reduced loss (the subclass's functional form with its own options)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, loss_weight={self.loss_weight}"
