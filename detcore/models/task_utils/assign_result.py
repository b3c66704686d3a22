"""The result of assigning ground-truth boxes to priors or proposals."""

from __future__ import annotations

from typing import Any

import torch


class AssignResult:
    """Which ground truth each of ``num_preds`` boxes is assigned to.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: ``(num_preds,)`` long: 0 = negative, -1 = ignored, ``k > 0`` = assigned to gt ``k - 1``.
        max_overlaps: ``(num_preds,)`` the IoU with the assigned gt (or the best one), or None.
        labels: ``(num_preds,)`` long class of the assigned gt, -1 where not positive; or None.
    """

    def __init__(
        self,
        num_gts: int,
        gt_inds: torch.Tensor,
        max_overlaps: torch.Tensor | None,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.num_gts = num_gts
        self.gt_inds = gt_inds
        self.max_overlaps = max_overlaps
        self.labels = labels
        self._extra_properties: dict[str, Any] = {}

    @property
    def num_preds(self) -> int:
        return len(self.gt_inds)

    def set_extra_property(self, key: str, value: Any) -> None:
        if key in self.info:
            raise KeyError(f"AssignResult: '{key}' is a basic property")
        self._extra_properties[key] = value

    def get_extra_property(self, key: str) -> Any:
        return self._extra_properties.get(key, None)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "num_gts": self.num_gts,
            "num_preds": self.num_preds,
            "gt_inds": self.gt_inds,
            "max_overlaps": self.max_overlaps,
            "labels": self.labels,
            **self._extra_properties,
        }

    def add_gt_(self, gt_labels: torch.Tensor) -> None:
        """Prepend the ground truths themselves as positives (used when gts join the proposals)."""
        self_inds = torch.arange(1, len(gt_labels) + 1, dtype=torch.long, device=gt_labels.device)
        self.gt_inds = torch.cat([self_inds, self.gt_inds])
        if self.max_overlaps is not None:
            self.max_overlaps = torch.cat([self.max_overlaps.new_ones(len(gt_labels)), self.max_overlaps])
        if self.labels is not None:
            self.labels = torch.cat([gt_labels, self.labels])

    def __repr__(self) -> str:
        pos = int((self.gt_inds > 0).sum())
        neg = int((self.gt_inds == 0).sum())
        return f"AssignResult(num_gts={self.num_gts}, num_preds={self.num_preds}, pos={pos}, neg={neg})"


def labels_of(assigned_gt_inds: torch.Tensor, gt_labels: torch.Tensor | None) -> torch.Tensor | None:
    """Per box the label of its assigned gt, -1 where not positive (None without ``gt_labels``)."""
    if gt_labels is None:
        return None
    labels = assigned_gt_inds.new_full((assigned_gt_inds.numel(),), -1)
    pos = assigned_gt_inds > 0
    if pos.any():
        labels[pos] = gt_labels[assigned_gt_inds[pos] - 1].to(labels.dtype)
    return labels
