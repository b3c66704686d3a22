"""The positives and negatives a sampler picked from an assignment."""

from __future__ import annotations

import torch

from detcore.models.task_utils.assign_result import AssignResult


class SamplingResult:
    """Sampled boxes and their targets.

    Attributes:
        pos_inds, neg_inds: long indices into the sampled-from boxes (gts first if they were added).
        pos_bboxes, neg_bboxes: ``(P, 4)``, ``(Q, 4)``.
        pos_is_gt: ``(P,)`` uint8, 1 where the positive is a gt added as a proposal.
        pos_assigned_gt_inds: ``(P,)`` index of each positive's gt (0-based).
        pos_gt_bboxes: ``(P, 4)`` that gt's box. pos_gt_labels: ``(P,)`` its label (or None).
    """

    def __init__(
        self,
        pos_inds: torch.Tensor,
        neg_inds: torch.Tensor,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        assign_result: AssignResult,
        gt_flags: torch.Tensor,
    ) -> None:
        self.pos_inds = pos_inds
        self.neg_inds = neg_inds
        self.pos_bboxes = bboxes[pos_inds]
        self.neg_bboxes = bboxes[neg_inds]
        self.pos_is_gt = gt_flags[pos_inds]
        self.num_gts = gt_bboxes.shape[0]
        self.pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1
        if gt_bboxes.numel() == 0:
            if self.pos_assigned_gt_inds.numel() != 0:
                raise ValueError("SamplingResult: positives assigned although there is no gt box")
            self.pos_gt_bboxes = torch.empty_like(gt_bboxes).view(-1, 4)
        else:
            gt_bboxes = gt_bboxes.view(-1, gt_bboxes.size(-1)) if gt_bboxes.dim() < 2 else gt_bboxes
            self.pos_gt_bboxes = gt_bboxes[self.pos_assigned_gt_inds.long(), :]
        self.pos_gt_labels = assign_result.labels[pos_inds] if assign_result.labels is not None else None

    @property
    def bboxes(self) -> torch.Tensor:
        """Positives then negatives, ``(P + Q, 4)``."""
        return torch.cat([self.pos_bboxes, self.neg_bboxes])

    def to(self, device: torch.device | str) -> SamplingResult:
        for key, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self

    def __repr__(self) -> str:
        return (
            f"SamplingResult(num_gts={self.num_gts}, pos={len(self.pos_inds)}, neg={len(self.neg_inds)}, "
            f"pos_is_gt={int(self.pos_is_gt.sum()) if len(self.pos_is_gt) else 0})"
        )
