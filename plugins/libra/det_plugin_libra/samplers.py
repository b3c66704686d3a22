"""Libra R-CNN's balanced samplers (Pang et al., 2019).

- :class:`InstanceBalancedPosSampler`: positives spread evenly over the ground-truth boxes they belong
  to, so large objects with many matching proposals do not take the whole positive quota.
- :class:`IoUBalancedNegSampler`: negatives drawn evenly from ``num_bins`` equal IoU intervals, so the
  hard negatives (higher IoU with some object, rare among random proposals) are not crowded out.

Both are used through the kernel's ``CombinedSampler`` (``pos_sampler`` / ``neg_sampler`` tables).
Random choices use ``torch.randperm`` (seed torch to repeat a draw).
"""

from __future__ import annotations

from typing import Any

import torch

from detcore.models.task_utils import AssignResult, RandomSampler


def _where(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).view(-1)


def _without(inds: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """The elements of ``inds`` not in ``taken`` (order kept)."""
    return inds[~torch.isin(inds, taken)]


def _at_most(inds: torch.Tensor, num: int) -> torch.Tensor:
    """``inds`` itself when it has at most ``num`` elements, else ``num`` of them at random."""
    return inds if inds.numel() <= num else RandomSampler.random_choice(inds, num)


def _top_up(sampled: torch.Tensor, pool: torch.Tensor, num_expected: int) -> torch.Tensor:
    """``sampled`` plus random elements of ``pool`` not in it, up to ``num_expected`` in all."""
    if sampled.numel() >= num_expected:
        return sampled
    return torch.cat([sampled, _at_most(_without(pool, sampled), num_expected - sampled.numel())])


class InstanceBalancedPosSampler(RandomSampler):
    """Up to ``round(num_expected / num_gts) + 1`` random positives per ground-truth box; a shortfall
    is filled at random from the remaining positives, a surplus cut at random to ``num_expected``."""

    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        pos_inds = _where(assign_result.gt_inds > 0)
        if pos_inds.numel() <= num_expected:
            return pos_inds
        gt_ids = assign_result.gt_inds[pos_inds].unique()
        per_gt = int(round(num_expected / float(len(gt_ids))) + 1)
        chosen = []
        for gt in gt_ids:
            inds = _where(assign_result.gt_inds == gt)
            chosen.append(_at_most(inds, per_gt))
        return _at_most(_top_up(torch.cat(chosen), pos_inds, num_expected), num_expected)


class IoUBalancedNegSampler(RandomSampler):
    """Negatives balanced over IoU.

    Negatives with max IoU below ``floor_thr`` (the "floor") get ``floor_fraction`` of the quota,
    drawn at random; the others get the rest, split evenly over ``num_bins`` equal intervals of
    ``[floor_thr, max IoU of all candidates)`` (``num_bins = 1``: at random). Any shortfall is filled
    at random from the unused negatives.

    Args:
        floor_thr: IoU below which negatives are floor negatives; ``0``: the zero-IoU ones; ``-1``: no
            floor (the intervals then start at IoU 0).
        floor_fraction: share of the quota for floor negatives, in ``[0, 1]``.
        num_bins: IoU intervals.
        reference_stateful_floor: the reference turns ``floor_thr = -1`` into ``0`` on its first call
            and keeps it, so from the second image on the zero-IoU negatives form a floor (drawn only
            to fill a shortfall, with ``floor_fraction`` 0). True reproduces that (the reference's
            training after its first image); False (default) keeps ``-1`` meaning "no floor" on every
            call.
    """

    def __init__(
        self,
        num: int,
        pos_fraction: float,
        floor_thr: float = -1,
        floor_fraction: float = 0,
        num_bins: int = 3,
        neg_pos_ub: float = -1,
        add_gt_as_proposals: bool = True,
        reference_stateful_floor: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals)
        if not (floor_thr >= 0 or floor_thr == -1):
            raise ValueError(f"IoUBalancedNegSampler: floor_thr must be >= 0 or -1, got {floor_thr}")
        if not 0 <= floor_fraction <= 1:
            raise ValueError(f"IoUBalancedNegSampler: floor_fraction must be in [0, 1], got {floor_fraction}")
        if num_bins < 1:
            raise ValueError(f"IoUBalancedNegSampler: num_bins must be >= 1, got {num_bins}")
        self.floor_thr = floor_thr
        self.floor_fraction = floor_fraction
        self.num_bins = num_bins
        self.reference_stateful_floor = reference_stateful_floor

    def sample_via_interval(
        self, max_overlaps: torch.Tensor, candidates: torch.Tensor, num_expected: int, floor: float
    ) -> torch.Tensor:
        """``num_expected`` of ``candidates`` (indices into ``max_overlaps``), ``num_expected //
        num_bins`` at most from each interval of ``[floor, max_overlaps.max())``, topped up at random."""
        max_iou = float(max_overlaps.max())
        width = (max_iou - floor) / self.num_bins
        per_bin = int(num_expected / self.num_bins)
        ious = max_overlaps[candidates]
        chosen = []
        for i in range(self.num_bins):
            lo, hi = floor + i * width, floor + (i + 1) * width
            in_bin = candidates[(ious >= lo) & (ious < hi)]
            chosen.append(_at_most(in_bin, per_bin))
        return _top_up(torch.cat(chosen), candidates, num_expected)

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        neg_inds = _where(assign_result.gt_inds == 0)
        if neg_inds.numel() <= num_expected:
            return neg_inds
        if assign_result.max_overlaps is None:
            raise ValueError("IoUBalancedNegSampler: the assign result has no max_overlaps")
        ious = assign_result.max_overlaps[neg_inds]
        floor_thr = self.floor_thr
        if floor_thr > 0:
            is_floor, is_iou = (ious >= 0) & (ious < floor_thr), ious >= floor_thr
        elif floor_thr == 0:
            is_floor, is_iou = ious == 0, ious > 0
        else:
            is_floor, is_iou = torch.zeros_like(ious, dtype=torch.bool), ious > floor_thr
            floor_thr = 0
            if self.reference_stateful_floor:
                self.floor_thr = 0
        floor_negs, iou_negs = neg_inds[is_floor], neg_inds[is_iou]
        num_iou = int(num_expected * (1 - self.floor_fraction))
        if iou_negs.numel() > num_iou and self.num_bins >= 2:
            overlaps = assign_result.max_overlaps
            iou_sampled = self.sample_via_interval(overlaps, iou_negs, num_iou, floor_thr)
        else:
            iou_sampled = _at_most(iou_negs, num_iou)
        floor_sampled = _at_most(floor_negs, num_expected - iou_sampled.numel())
        return _top_up(torch.cat([floor_sampled, iou_sampled]), neg_inds, num_expected)
