"""Samplers: choose which assigned boxes train the head (all, random, or the hardest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch

from detcore.models.task_utils.assign_result import AssignResult
from detcore.models.task_utils.sampling_result import SamplingResult


class BaseSampler:
    """Pick up to ``num`` boxes, of which up to ``num * pos_fraction`` positive; the rest negative,
    at most ``neg_pos_ub * max(1, num_pos)`` of them when ``neg_pos_ub >= 0``. With
    ``add_gt_as_proposals`` the gt boxes join the candidates (as positives) first."""

    def __init__(
        self, num: int, pos_fraction: float, neg_pos_ub: float = -1, add_gt_as_proposals: bool = True
    ) -> None:
        if num < 0 or not 0 <= pos_fraction <= 1:
            raise ValueError(
                f"{type(self).__name__}: need num >= 0 and 0 <= pos_fraction <= 1, "
                f"got num={num}, pos_fraction={pos_fraction}"
            )
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals

    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def sample(
        self,
        assign_result: AssignResult,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SamplingResult:
        """Sample from ``bboxes`` ``(N, 4+)`` given their assignment to ``gt_bboxes`` ``(K, 4)``.

        Note: with ``add_gt_as_proposals`` the ``assign_result`` is extended in place (gts prepended).
        """
        if bboxes.dim() < 2:
            bboxes = bboxes[None, :]
        bboxes = bboxes[:, :4]
        gt_flags = bboxes.new_zeros((bboxes.shape[0],), dtype=torch.uint8)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            if gt_labels is None:
                raise ValueError(
                    f"{type(self).__name__}: gt_labels are needed when add_gt_as_proposals is True"
                )
            bboxes = torch.cat([gt_bboxes[:, :4].to(bboxes.dtype), bboxes], dim=0)
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([bboxes.new_ones(gt_bboxes.shape[0], dtype=torch.uint8), gt_flags])
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = self._sample_pos(assign_result, num_expected_pos, bboxes=bboxes, **kwargs).unique()
        num_sampled_pos = pos_inds.numel()
        num_expected_neg = self.num - num_sampled_pos
        if self.neg_pos_ub >= 0:
            num_expected_neg = min(num_expected_neg, int(self.neg_pos_ub * max(1, num_sampled_pos)))
        neg_inds = self._sample_neg(assign_result, num_expected_neg, bboxes=bboxes, **kwargs).unique()
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)


def _where(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask, as_tuple=False).view(-1)


class RandomSampler(BaseSampler):
    """Sample positives and negatives uniformly at random (``torch.randperm``; seed torch to repeat)."""

    def __init__(
        self,
        num: int,
        pos_fraction: float,
        neg_pos_ub: float = -1,
        add_gt_as_proposals: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals)

    @staticmethod
    def random_choice(gallery: torch.Tensor, num: int) -> torch.Tensor:
        """``num`` distinct elements of ``gallery`` in random order."""
        if len(gallery) < num:
            raise ValueError(f"random_choice: cannot pick {num} from {len(gallery)}")
        perm = torch.randperm(gallery.numel(), device="cpu")[:num].to(gallery.device)
        return gallery[perm]

    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        pos_inds = _where(assign_result.gt_inds > 0)
        return pos_inds if pos_inds.numel() <= num_expected else self.random_choice(pos_inds, num_expected)

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        neg_inds = _where(assign_result.gt_inds == 0)
        return neg_inds if neg_inds.numel() <= num_expected else self.random_choice(neg_inds, num_expected)


class PseudoSampler:
    """Take every positive and every negative (dense heads that weigh all priors)."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def sample(
        self,
        assign_result: AssignResult,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> SamplingResult:
        pos_inds = _where(assign_result.gt_inds > 0).unique()
        neg_inds = _where(assign_result.gt_inds == 0).unique()
        gt_flags = bboxes.new_zeros(bboxes.shape[0], dtype=torch.uint8)
        return SamplingResult(pos_inds, neg_inds, bboxes, gt_bboxes, assign_result, gt_flags)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class OHEMSampler(BaseSampler):
    # How an RoI head calls it (StandardRoIHead; the reference passes the head itself as ``context``):
    #
    #     def ohem_loss(bboxes: Tensor, labels: Tensor) -> Tensor:   # one image's candidates
    #         rois = bbox2roi([bboxes])
    #         cls_score = self._bbox_forward(img_feats, rois)["cls_score"]   # img_feats: this image's
    #         return self.bbox_head.loss_cls(                              # levels, [lvl[i:i+1] ...]
    #             cls_score, labels, cls_score.new_ones(len(labels)), reduction_override="none")
    #
    #     result = self.bbox_sampler.sample(assign_result, proposals.bboxes, gt.bboxes, gt.labels,
    #                                       loss_fn=ohem_loss, background_label=self.bbox_head.num_classes)
    #
    # Every sampler accepts (and, except this one, ignores) ``loss_fn``/``background_label``, so the
    # head may pass them unconditionally; ``loss_fn`` is called at most twice per image (positives,
    # then negatives), only when there are more candidates than the quota, already under no_grad.
    # As the reference 2.x, the ranking loss is the classification loss alone (``loss_key``
    # "loss_cls"; its hard_mining calls bbox_head.loss with bbox_pred=None).
    """Online hard example mining (Shrivastava et al., 2016): keep the highest-loss boxes.

    ``sample(..., loss_fn=f)`` where ``f(bboxes (K, 4), labels (K,)) -> per-box loss (K,)``, computed
    by the caller (an RoI head runs its bbox head on these boxes under ``torch.no_grad()`` and returns
    the unreduced classification loss). Negatives are passed with label ``background_label`` (a
    ``sample`` keyword; a RoI head passes its ``num_classes``). Positives/negatives that fit in the
    quota are all kept without calling ``loss_fn``.
    """

    def __init__(
        self,
        num: int,
        pos_fraction: float,
        neg_pos_ub: float = -1,
        add_gt_as_proposals: bool = True,
        loss_key: str = "loss_cls",
        **kwargs: Any,
    ) -> None:
        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals)
        self.loss_key = loss_key

    def sample(
        self,
        assign_result: AssignResult,
        bboxes: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_labels: torch.Tensor | None = None,
        loss_fn: LossFn | None = None,
        background_label: int = -1,
        **kwargs: Any,
    ) -> SamplingResult:
        if loss_fn is None:
            raise ValueError("OHEMSampler.sample needs loss_fn(bboxes, labels) -> per-box loss")
        return super().sample(
            assign_result,
            bboxes,
            gt_bboxes,
            gt_labels,
            loss_fn=loss_fn,
            background_label=background_label,
            **kwargs,
        )

    @staticmethod
    def hard_mining(
        inds: torch.Tensor, num_expected: int, bboxes: torch.Tensor, labels: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor:
        """The ``num_expected`` of ``inds`` whose boxes have the highest loss."""
        with torch.no_grad():
            loss = loss_fn(bboxes, labels)
            if loss.dim() != 1 or loss.numel() != bboxes.size(0):
                raise ValueError(
                    f"OHEMSampler: loss_fn must return one loss per box ({bboxes.size(0)}), "
                    f"got shape {tuple(loss.shape)}"
                )
            _, topk = loss.topk(num_expected)
        return inds[topk]

    def _sample_pos(
        self,
        assign_result: AssignResult,
        num_expected: int,
        bboxes: torch.Tensor | None = None,
        loss_fn: LossFn | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        pos_inds = _where(assign_result.gt_inds > 0)
        if pos_inds.numel() <= num_expected:
            return pos_inds
        return self.hard_mining(
            pos_inds, num_expected, bboxes[pos_inds], assign_result.labels[pos_inds], loss_fn
        )

    def _sample_neg(
        self,
        assign_result: AssignResult,
        num_expected: int,
        bboxes: torch.Tensor | None = None,
        loss_fn: LossFn | None = None,
        background_label: int = -1,
        **kwargs: Any,
    ) -> torch.Tensor:
        neg_inds = _where(assign_result.gt_inds == 0)
        if neg_inds.numel() <= num_expected:
            return neg_inds
        labels = neg_inds.new_full((neg_inds.numel(),), background_label)
        return self.hard_mining(neg_inds, num_expected, bboxes[neg_inds], labels, loss_fn)


class CombinedSampler(BaseSampler):
    """Positives from one sampler, negatives from another (Libra R-CNN's instance-balanced positives
    with IoU-balanced negatives). ``pos_sampler`` / ``neg_sampler`` are ``task_util`` tables (or built
    samplers); tables get this sampler's ``num``, ``pos_fraction``, ``neg_pos_ub`` and
    ``add_gt_as_proposals`` unless they set their own. The quotas, the gt proposals and the result are
    this sampler's; only ``_sample_pos`` / ``_sample_neg`` are delegated."""

    component_kinds = {"pos_sampler": "task_util", "neg_sampler": "task_util"}

    def __init__(
        self,
        num: int,
        pos_fraction: float,
        pos_sampler: Any,
        neg_sampler: Any,
        neg_pos_ub: float = -1,
        add_gt_as_proposals: bool = True,
        **kwargs: Any,
    ) -> None:
        from detcore.registry import build

        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals)
        defaults = {"num": num, "pos_fraction": pos_fraction, "neg_pos_ub": neg_pos_ub,
                    "add_gt_as_proposals": add_gt_as_proposals}
        built = []
        for name, table in (("pos_sampler", pos_sampler), ("neg_sampler", neg_sampler)):
            if isinstance(table, Mapping):
                table = build("task_util", {**defaults, **table}, where=f"CombinedSampler.{name}")
            if not isinstance(table, BaseSampler):
                raise TypeError(
                    f"CombinedSampler.{name}: needs a sampler with _sample_pos/_sample_neg (a BaseSampler), "
                    f"got {type(table).__name__}"
                )
            built.append(table)
        self.pos_sampler, self.neg_sampler = built

    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        return self.pos_sampler._sample_pos(assign_result, num_expected, **kwargs)

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs: Any) -> torch.Tensor:
        return self.neg_sampler._sample_neg(assign_result, num_expected, **kwargs)
