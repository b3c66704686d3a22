"""``CenterRegionAssigner``: FSAF's effective / ignoring regions as a prior assigner.

For every ground-truth box the *core* (effective) region is the box shrunk about its centre to
``pos_scale`` of its width and height, the *shadow* region the box shrunk to ``neg_scale``. A prior
(one square per location, xyxy) is

- **positive** for a gt when the prior's centre lies inside the gt box and the prior overlaps the
  gt's core by more than ``min_pos_iof`` of its own area (intersection over the prior's area); a
  prior positive for several gts goes to the smallest of them (the others see it as shadowed);
- **shadowed** for a gt when it overlaps the gt's shadow region by more than ``min_pos_iof`` of its
  area without being in its core: it is background, but the loss of the gt's *class* at that prior is
  ignored (``shadowed_labels``, pairs ``(prior index, class)``, an extra property of the result);
- **ignored** (gt index -1) when its centre lies in an ignored (crowd) box shrunk to
  ``ignore_gt_scale``;
- **negative** (0) otherwise.

A prior positive for class ``c`` and shadowed for another gt of class ``c`` becomes background with
class ``c`` ignored, unless ``foreground_dominate`` (then it stays positive). With ``pos_scale ==
neg_scale`` (the reference's FSAF configs: 0.2 / 0.2) there is no shadow band, only overlaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from detcore.models.task_utils.assign_result import AssignResult
from detcore.registry import build


def scale_boxes(bboxes: torch.Tensor, scale: float) -> torch.Tensor:
    """``(N, 4)`` xyxy boxes scaled about their centres by ``scale`` (width and height)."""
    cx = (bboxes[:, 0] + bboxes[:, 2]) * 0.5
    cy = (bboxes[:, 1] + bboxes[:, 3]) * 0.5
    half_w = (bboxes[:, 2] - bboxes[:, 0]) * 0.5 * scale
    half_h = (bboxes[:, 3] - bboxes[:, 1]) * 0.5 * scale
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def points_in_boxes(points: torch.Tensor, bboxes: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` points, ``(k, 4)`` boxes -> ``(n, k)`` bool: the point strictly inside the box."""
    x, y = points[:, 0:1], points[:, 1:2]
    return (x > bboxes[:, 0]) & (x < bboxes[:, 2]) & (y > bboxes[:, 1]) & (y < bboxes[:, 3])


class CenterRegionAssigner:
    """Assign priors in the centre region of a box as its positives (see the module doc).

    Args:
        pos_scale: the core (effective) region's fraction of the box.
        neg_scale: the shadow (ignoring) region's fraction of the box (``>= pos_scale``).
        min_pos_iof: the least overlap (over the prior's area) with a region to count as inside it.
        ignore_gt_scale: ignored (crowd) boxes are shrunk to this before the centre test.
        foreground_dominate: a prior both positive and shadowed for the same class stays positive.
        iou_calculator: the overlap calculator table (``BboxOverlaps2D``).
    """

    def __init__(
        self,
        pos_scale: float,
        neg_scale: float,
        min_pos_iof: float = 1e-2,
        ignore_gt_scale: float = 0.5,
        foreground_dominate: bool = False,
        iou_calculator: Mapping[str, Any] = {"type": "BboxOverlaps2D"},  # noqa: B006 - read only
    ) -> None:
        if not 0 < pos_scale <= neg_scale:
            raise ValueError(
                f"CenterRegionAssigner: need 0 < pos_scale <= neg_scale, got {pos_scale} and {neg_scale}"
            )
        self.pos_scale = float(pos_scale)
        self.neg_scale = float(neg_scale)
        self.min_pos_iof = float(min_pos_iof)
        self.ignore_gt_scale = float(ignore_gt_scale)
        self.foreground_dominate = bool(foreground_dominate)
        self.iou_calculator = build("task_util", iou_calculator, where="CenterRegionAssigner.iou_calculator")

    @staticmethod
    def get_gt_priorities(gt_bboxes: torch.Tensor) -> torch.Tensor:
        """``(k,)`` priorities: the rank of each gt's area from the largest (0) to the smallest (k-1)."""
        areas = (gt_bboxes[:, 2] - gt_bboxes[:, 0]) * (gt_bboxes[:, 3] - gt_bboxes[:, 1])
        return areas.sort(descending=True)[1].argsort()

    def assign(
        self,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign ``bboxes`` (priors, ``(n, 4)``) to ``gt_bboxes`` ``(k, 4)``.

        Returns an :class:`AssignResult` (``gt_inds``: 0 negative, -1 ignored, ``i + 1`` gt ``i``; labels
        when ``gt_labels`` is given) with the extra property ``shadowed_labels``: ``(m, 2)`` long pairs
        ``(prior index, class)`` whose classification loss is ignored (``None`` without labels).
        """
        if bboxes.dim() != 2 or bboxes.size(1) != 4:
            raise ValueError(f"CenterRegionAssigner: bboxes must be (n, 4), got {tuple(bboxes.shape)}")
        if gt_bboxes.dim() != 2 or gt_bboxes.size(1) != 4:
            raise ValueError(f"CenterRegionAssigner: gt_bboxes must be (k, 4), got {tuple(gt_bboxes.shape)}")
        num_bboxes, num_gts = bboxes.size(0), gt_bboxes.size(0)
        gt_bboxes = gt_bboxes.to(bboxes.dtype)
        centers = (bboxes[:, :2] + bboxes[:, 2:]) / 2
        if num_gts == 0 or num_bboxes == 0:
            assigned = bboxes.new_zeros((num_bboxes,), dtype=torch.long)
            shadowed = bboxes.new_zeros((0, 2), dtype=torch.long)
        else:
            core_iof = self.iou_calculator(bboxes, scale_boxes(gt_bboxes, self.pos_scale), mode="iof")
            shadow_iof = self.iou_calculator(bboxes, scale_boxes(gt_bboxes, self.neg_scale), mode="iof")
            in_core = points_in_boxes(centers, gt_bboxes) & (core_iof > self.min_pos_iof)
            in_shadow = (shadow_iof > self.min_pos_iof) & ~in_core
            assigned, shadowed = self.assign_one_hot_gt_indices(
                in_core, in_shadow, self.get_gt_priorities(gt_bboxes)
            )
        if gt_bboxes_ignore is not None and gt_bboxes_ignore.numel() > 0:
            ignore = scale_boxes(gt_bboxes_ignore[:, :4].to(bboxes.dtype), self.ignore_gt_scale)
            assigned[points_in_boxes(centers, ignore).any(dim=1)] = -1

        labels = shadowed_labels = None
        if gt_labels is not None:
            labels = assigned.new_full((num_bboxes,), -1)
            pos = assigned > 0
            labels[pos] = gt_labels[assigned[pos] - 1].to(labels.dtype)
            shadowed_labels = shadowed.clone()
            if shadowed.numel() > 0:
                prior_idx = shadowed[:, 0]
                shadowed_labels[:, 1] = gt_labels[shadowed[:, 1] - 1].to(shadowed.dtype)
                same_class = labels[prior_idx] == shadowed_labels[:, 1]
                if self.foreground_dominate:
                    shadowed_labels = shadowed_labels[~same_class]
                else:
                    labels[prior_idx[same_class]] = -1
                    assigned[prior_idx[same_class]] = 0
        result = AssignResult(num_gts, assigned, None, labels=labels)
        result.set_extra_property("shadowed_labels", shadowed_labels)
        return result

    @staticmethod
    def assign_one_hot_gt_indices(
        in_core: torch.Tensor, in_shadow: torch.Tensor, gt_priority: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One gt per prior from the ``(n, k)`` bool masks ``in_core`` / ``in_shadow``.

        A prior in several cores goes to the gt of the highest ``gt_priority`` ``(k,)``; the other cores
        it lies in count as shadowed. Returns ``assigned (n,)`` (0 none, ``i + 1`` gt ``i``) and
        ``shadowed (m, 2)`` pairs ``(prior index, gt index + 1)``.
        """
        num_bboxes, num_gts = in_core.shape
        if gt_priority is None:
            gt_priority = torch.arange(num_gts, device=in_core.device)
        if gt_priority.numel() != num_gts:
            raise ValueError(f"assign_one_hot_gt_indices: {gt_priority.numel()} priorities for {num_gts} gts")
        assigned = in_core.new_zeros((num_bboxes,), dtype=torch.long)
        lost_core = torch.zeros_like(in_core)
        matched = in_core.any(dim=1)
        if matched.any():
            pair_priority = torch.where(in_core, gt_priority.view(1, -1).expand_as(in_core),
                                        gt_priority.new_full((), -1))
            best = pair_priority[matched].argmax(dim=1)
            assigned[matched] = best + 1
            lost_core = in_core.clone()
            lost_core[matched.nonzero().flatten(), best] = False
        shadowed = torch.cat([in_shadow.nonzero(), lost_core.nonzero()], dim=0)
        shadowed[:, 1] += 1
        return assigned, shadowed

    def __repr__(self) -> str:
        return (f"CenterRegionAssigner(pos_scale={self.pos_scale}, neg_scale={self.neg_scale}, "
                f"min_pos_iof={self.min_pos_iof})")
