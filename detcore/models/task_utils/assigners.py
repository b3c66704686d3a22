"""Assigners: decide for every prior/proposal whether it is positive (and for which gt), negative or ignored.

All return an :class:`AssignResult`; boxes are ``(N, 4)`` xyxy pixels (a 5th score column is ignored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.task_utils.assign_result import AssignResult, labels_of
from detcore.models.task_utils.iou_calculators import BboxOverlaps2D

INF = 100000000


def _build_iou_calculator(cfg: Mapping[str, Any] | Any) -> Any:
    if cfg is None:
        return BboxOverlaps2D()
    if isinstance(cfg, Mapping):
        if cfg.get("type") == "BboxOverlaps2D":
            return BboxOverlaps2D(**{k: v for k, v in cfg.items() if k != "type"})
        from detcore.registry import build

        return build("task_util", cfg, where="iou_calculator")
    return cfg


def _empty_result(
    num_gts: int, num_bboxes: int, like: torch.Tensor, gt_labels: torch.Tensor | None, fill: int
) -> AssignResult:
    gt_inds = like.new_full((num_bboxes,), fill if num_gts > 0 else 0, dtype=torch.long)
    labels = None if gt_labels is None else like.new_full((num_bboxes,), -1, dtype=torch.long)
    return AssignResult(num_gts, gt_inds, like.new_zeros((num_bboxes,)), labels=labels)


class MaxIoUAssigner:
    """Assign each box to the gt it overlaps most.

    A box is negative when its max IoU is in ``[0, neg_iou_thr)`` (or in ``[lo, hi)`` for a pair),
    positive when it is ``>= pos_iou_thr``, otherwise ignored. With ``match_low_quality`` every gt also
    takes the box(es) it overlaps most if that IoU is ``>= min_pos_iou`` (all boxes tied at the max with
    ``gt_max_assign_all``). Boxes whose IoF with ignored gts exceeds ``ignore_iof_thr`` (> 0) are
    ignored. With ``gpu_assign_thr > 0`` and more gts than that, the work runs on the CPU.
    """

    def __init__(
        self,
        pos_iou_thr: float,
        neg_iou_thr: float | Sequence[float],
        min_pos_iou: float = 0.0,
        gt_max_assign_all: bool = True,
        ignore_iof_thr: float = -1,
        ignore_wrt_candidates: bool = True,
        match_low_quality: bool = True,
        gpu_assign_thr: int = -1,
        iou_calculator: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(neg_iou_thr, (list, tuple)):
            if len(neg_iou_thr) != 2:
                raise ValueError(f"MaxIoUAssigner: neg_iou_thr pair must have 2 values, got {neg_iou_thr}")
            neg_iou_thr = (float(neg_iou_thr[0]), float(neg_iou_thr[1]))
        elif isinstance(neg_iou_thr, (int, float)):
            neg_iou_thr = float(neg_iou_thr)
        else:
            raise TypeError(f"MaxIoUAssigner: neg_iou_thr must be a number or a pair, got {neg_iou_thr!r}")
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.match_low_quality = match_low_quality
        self.gpu_assign_thr = gpu_assign_thr
        self.iou_calculator = _build_iou_calculator(iou_calculator)

    def assign(
        self,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign ``gt_bboxes`` ``(K, 4)`` (labels ``(K,)``) to ``bboxes`` ``(N, 4)``."""
        on_cpu = self.gpu_assign_thr > 0 and gt_bboxes.shape[0] > self.gpu_assign_thr
        device = bboxes.device
        if on_cpu:
            bboxes, gt_bboxes = bboxes.cpu(), gt_bboxes.cpu()
            gt_bboxes_ignore = gt_bboxes_ignore.cpu() if gt_bboxes_ignore is not None else None
            gt_labels = gt_labels.cpu() if gt_labels is not None else None
        overlaps = self.iou_calculator(gt_bboxes, bboxes)
        if (
            self.ignore_iof_thr > 0
            and gt_bboxes_ignore is not None
            and gt_bboxes_ignore.numel() > 0
            and bboxes.numel() > 0
        ):
            if self.ignore_wrt_candidates:
                ignore_max = self.iou_calculator(bboxes, gt_bboxes_ignore, mode="iof").max(dim=1).values
            else:
                ignore_max = self.iou_calculator(gt_bboxes_ignore, bboxes, mode="iof").max(dim=0).values
            overlaps[:, ignore_max > self.ignore_iof_thr] = -1
        result = self.assign_wrt_overlaps(overlaps, gt_labels)
        if on_cpu:
            result.gt_inds = result.gt_inds.to(device)
            result.max_overlaps = result.max_overlaps.to(device)
            if result.labels is not None:
                result.labels = result.labels.to(device)
        return result

    def assign_wrt_overlaps(
        self, overlaps: torch.Tensor, gt_labels: torch.Tensor | None = None
    ) -> AssignResult:
        """Assign from an overlap matrix ``(K gts, N boxes)``."""
        num_gts, num_bboxes = overlaps.size(0), overlaps.size(1)
        assigned = overlaps.new_full((num_bboxes,), -1, dtype=torch.long)
        if num_gts == 0 or num_bboxes == 0:
            return _empty_result(num_gts, num_bboxes, overlaps, gt_labels, fill=-1)
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
        if isinstance(self.neg_iou_thr, float):
            assigned[(max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)] = 0
        else:
            lo, hi = self.neg_iou_thr
            assigned[(max_overlaps >= lo) & (max_overlaps < hi)] = 0
        pos = max_overlaps >= self.pos_iou_thr
        assigned[pos] = argmax_overlaps[pos] + 1
        if self.match_low_quality:
            # gts in order, so a later gt wins a box that two gts overlap most (as the reference)
            for i in range(num_gts):
                if gt_max_overlaps[i] >= self.min_pos_iou:
                    if self.gt_max_assign_all:
                        assigned[overlaps[i, :] == gt_max_overlaps[i]] = i + 1
                    else:
                        assigned[gt_argmax_overlaps[i]] = i + 1
        return AssignResult(num_gts, assigned, max_overlaps, labels=labels_of(assigned, gt_labels))


class ATSSAssigner:
    """Adaptive Training Sample Selection (Zhang et al., 2020).

    Per level the ``topk`` priors whose centres are closest to a gt's centre are candidates; those with
    IoU ``>= mean + std`` of the candidates' IoUs and centre inside the gt are positive (a prior claimed
    by several gts goes to the one with the highest IoU); every other prior is negative.
    """

    def __init__(
        self,
        topk: int,
        alpha: float | None = None,
        iou_calculator: Mapping[str, Any] | None = None,
        ignore_iof_thr: float = -1,
    ) -> None:
        self.topk = topk
        self.alpha = alpha
        self.iou_calculator = _build_iou_calculator(iou_calculator)
        self.ignore_iof_thr = ignore_iof_thr

    def assign(
        self,
        bboxes: torch.Tensor,
        num_level_bboxes: Sequence[int],
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
        cls_scores: torch.Tensor | None = None,
        bbox_preds: torch.Tensor | None = None,
    ) -> AssignResult:
        """Assign gts ``(K, 4)`` to priors ``(N, 4)`` that come from levels of sizes ``num_level_bboxes``."""
        bboxes = bboxes[:, :4]
        num_gt, num_bboxes = gt_bboxes.size(0), bboxes.size(0)
        if sum(num_level_bboxes) != num_bboxes:
            raise ValueError(
                f"ATSSAssigner: num_level_bboxes sum to {sum(num_level_bboxes)}, "
                f"but there are {num_bboxes} bboxes"
            )
        if self.alpha is None:
            overlaps = self.iou_calculator(bboxes, gt_bboxes)
        else:
            if cls_scores is None or bbox_preds is None:
                raise ValueError("ATSSAssigner with alpha needs cls_scores and bbox_preds")
            cls_cost = torch.sigmoid(cls_scores[:, gt_labels])
            overlaps = self.iou_calculator(bbox_preds, gt_bboxes)
            overlaps = cls_cost ** (1 - self.alpha) * overlaps**self.alpha
        assigned = overlaps.new_full((num_bboxes,), 0, dtype=torch.long)
        if num_gt == 0 or num_bboxes == 0:
            return _empty_result(num_gt, num_bboxes, overlaps, gt_labels, fill=0)

        gt_points = torch.stack(
            ((gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2.0, (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2.0), dim=1
        )
        bboxes_cx = (bboxes[:, 0] + bboxes[:, 2]) / 2.0
        bboxes_cy = (bboxes[:, 1] + bboxes[:, 3]) / 2.0
        bboxes_points = torch.stack((bboxes_cx, bboxes_cy), dim=1)
        distances = (bboxes_points[:, None, :] - gt_points[None, :, :]).pow(2).sum(-1).sqrt()
        if (
            self.ignore_iof_thr > 0
            and gt_bboxes_ignore is not None
            and gt_bboxes_ignore.numel() > 0
            and bboxes.numel() > 0
        ):
            ignore_max = self.iou_calculator(bboxes, gt_bboxes_ignore, mode="iof").max(dim=1).values
            ignore_idxs = ignore_max > self.ignore_iof_thr
            distances[ignore_idxs, :] = INF
            assigned[ignore_idxs] = -1

        candidate_idxs = []
        start = 0
        for n in num_level_bboxes:
            end = start + n
            k = min(self.topk, n)
            _, topk_idxs = distances[start:end, :].topk(k, dim=0, largest=False)
            candidate_idxs.append(topk_idxs + start)
            start = end
        candidate_idxs = torch.cat(candidate_idxs, dim=0)  # (C, K)
        gt_range = torch.arange(num_gt, device=overlaps.device)
        candidate_overlaps = overlaps[candidate_idxs, gt_range]
        thr = candidate_overlaps.mean(0) + candidate_overlaps.std(0)
        is_pos = candidate_overlaps >= thr[None, :]

        # the candidate's centre must lie inside the gt
        flat_idxs = (candidate_idxs + gt_range[None, :] * num_bboxes).view(-1)
        ep_cx = bboxes_cx.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
        ep_cy = bboxes_cy.view(1, -1).expand(num_gt, num_bboxes).contiguous().view(-1)
        cx = ep_cx[flat_idxs].view(-1, num_gt)
        cy = ep_cy[flat_idxs].view(-1, num_gt)
        ltrb = torch.stack(
            [cx - gt_bboxes[:, 0], cy - gt_bboxes[:, 1], gt_bboxes[:, 2] - cx, gt_bboxes[:, 3] - cy], dim=1
        )
        is_pos = is_pos & (ltrb.min(dim=1).values > 0.01)

        # a prior claimed by several gts goes to the one with the highest IoU
        overlaps_inf = torch.full_like(overlaps, -INF).t().contiguous().view(-1)
        index = flat_idxs[is_pos.view(-1)]
        overlaps_inf[index] = overlaps.t().contiguous().view(-1)[index]
        overlaps_inf = overlaps_inf.view(num_gt, -1).t()
        max_overlaps, argmax_overlaps = overlaps_inf.max(dim=1)
        hit = max_overlaps != -INF
        assigned[hit] = argmax_overlaps[hit] + 1
        return AssignResult(num_gt, assigned, max_overlaps, labels=labels_of(assigned, gt_labels))


class PointAssigner:
    """Assign gts to points (RepPoints): each gt goes to the ``pos_num`` points of its level nearest to
    its centre (distance normalised by the gt's size); the level is
    ``round_down((log2(w / scale) + log2(h / scale)) / 2)`` clamped to the points' levels.

    Points are ``(N, 3)``: x, y and stride (the level is ``log2(stride)``).
    """

    def __init__(self, scale: int = 4, pos_num: int = 3) -> None:
        self.scale = scale
        self.pos_num = pos_num

    def assign(
        self,
        points: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None = None,
        gt_labels: torch.Tensor | None = None,
    ) -> AssignResult:
        num_points, num_gts = points.shape[0], gt_bboxes.shape[0]
        if num_gts == 0 or num_points == 0:
            gt_inds = points.new_full((num_points,), 0, dtype=torch.long)
            labels = None if gt_labels is None else points.new_full((num_points,), -1, dtype=torch.long)
            return AssignResult(num_gts, gt_inds, None, labels=labels)
        if points.size(1) < 3:
            raise ValueError(f"PointAssigner: points must be (N, 3) with strides, got {tuple(points.shape)}")
        points_xy = points[:, :2]
        points_lvl = torch.log2(points[:, 2]).int()
        lvl_min, lvl_max = points_lvl.min(), points_lvl.max()
        gt_xy = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2
        gt_wh = (gt_bboxes[:, 2:] - gt_bboxes[:, :2]).clamp(min=1e-6)
        gt_lvl = ((torch.log2(gt_wh[:, 0] / self.scale) + torch.log2(gt_wh[:, 1] / self.scale)) / 2).int()
        gt_lvl = torch.clamp(gt_lvl, min=lvl_min, max=lvl_max)
        assigned = points.new_zeros((num_points,), dtype=torch.long)
        assigned_dist = points.new_full((num_points,), float("inf"))
        points_range = torch.arange(num_points, device=points.device)
        for idx in range(num_gts):
            lvl_mask = points_lvl == gt_lvl[idx]
            points_index = points_range[lvl_mask]
            dist = ((points_xy[lvl_mask] - gt_xy[[idx]]) / gt_wh[[idx]]).norm(dim=1)
            min_dist, min_idx = torch.topk(dist, min(self.pos_num, dist.numel()), largest=False)
            chosen = points_index[min_idx]
            closer = min_dist < assigned_dist[chosen]
            chosen = chosen[closer]
            assigned[chosen] = idx + 1
            assigned_dist[chosen] = min_dist[closer]
        return AssignResult(num_gts, assigned, None, labels=labels_of(assigned, gt_labels))
