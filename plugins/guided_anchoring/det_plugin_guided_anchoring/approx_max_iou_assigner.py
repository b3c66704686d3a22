"""``ApproxMaxIoUAssigner``: max-IoU assignment of *squares* judged by their *approximations*.

Guided Anchoring has no fixed anchor at a location, only a square (the base of the predicted anchor)
and ``approxs_per_octave`` approximate anchors of several scales and ratios sharing its centre. The
IoU of a square with a gt box is the best IoU of its approximations with that box; with that overlap
matrix the assignment is :class:`MaxIoUAssigner`'s (positive / negative thresholds, low-quality
matches, ignored boxes by the squares' IoF).
"""

from __future__ import annotations

import torch

from detcore.models.task_utils.assign_result import AssignResult
from detcore.models.task_utils.assigners import MaxIoUAssigner


class ApproxMaxIoUAssigner(MaxIoUAssigner):
    """:class:`MaxIoUAssigner` (same arguments) over approximations grouped per square."""

    def assign(  # type: ignore[override]
        self,
        approxs: torch.Tensor,
        squares: torch.Tensor,
        approxs_per_octave: int,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign ``gt_bboxes`` ``(K, 4)`` to ``squares`` ``(N, 4)``.

        ``approxs`` is ``(N * approxs_per_octave, 4)``, the approximations of square ``i`` at rows
        ``i * approxs_per_octave ... (i + 1) * approxs_per_octave - 1`` (the prior generators' order).
        """
        num_squares, num_gts = squares.size(0), gt_bboxes.size(0)
        if approxs.size(0) != num_squares * approxs_per_octave:
            raise ValueError(
                f"ApproxMaxIoUAssigner: {approxs.size(0)} approxs for {num_squares} squares x "
                f"{approxs_per_octave} approxs_per_octave"
            )
        if num_squares == 0 or num_gts == 0:
            return self.assign_wrt_overlaps(approxs.new_zeros((num_gts, num_squares)), gt_labels)
        # (K, N * A) -> best of the A approximations of each square: (K, N)
        all_overlaps = self.iou_calculator(gt_bboxes, approxs)
        overlaps = all_overlaps.view(num_gts, num_squares, approxs_per_octave).max(dim=2).values
        if (
            self.ignore_iof_thr > 0
            and gt_bboxes_ignore is not None
            and gt_bboxes_ignore.numel() > 0
        ):
            if self.ignore_wrt_candidates:
                ignore_max = self.iou_calculator(squares, gt_bboxes_ignore, mode="iof").max(dim=1).values
            else:
                ignore_max = self.iou_calculator(gt_bboxes_ignore, squares, mode="iof").max(dim=0).values
            overlaps[:, ignore_max > self.ignore_iof_thr] = -1
        return self.assign_wrt_overlaps(overlaps, gt_labels)
