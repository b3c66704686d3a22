"""Libra's samplers on hand-made assign results: negatives per IoU interval, positives per instance,
and both through the kernel's CombinedSampler as the RoI head calls it."""

from __future__ import annotations

import pytest
import torch

import detcore
from detcore.models.task_utils import AssignResult, PseudoSampler

pytest.importorskip("det_plugin_libra", reason="det-plugin-libra is not installed")


def neg_sampler(**kwargs):
    table = {"type": "IoUBalancedNegSampler", "num": 100, "pos_fraction": 0.25, "floor_thr": -1,
             "floor_fraction": 0, "num_bins": 3, **kwargs}  # fmt: skip
    return detcore.build("task_util", table)


def iou_case() -> AssignResult:
    """2 positives of IoU 0.9 (so the three intervals are [0, .3), [.3, .6), [.6, .9)); negatives: 20
    at IoU 0 to 0.2, 4 at 0.4 and 3 at 0.65 (hypothetically, as with a low neg_iou_thr)."""
    ious = [0.9, 0.9] + [0.01 * i for i in range(20)] + [0.4] * 4 + [0.65] * 3
    gt_inds = [1, 2] + [0] * 27
    return AssignResult(2, torch.tensor(gt_inds), torch.tensor(ious), torch.tensor([0, 1] + [-1] * 27))


def per_bin(inds: torch.Tensor, ious: torch.Tensor) -> list[int]:
    v = ious[inds]
    return [int(((v >= lo) & (v < hi)).sum()) for lo, hi in ((0, 0.3), (0.3, 0.6), (0.6, 0.9))]


def test_negatives_are_spread_over_the_iou_intervals():
    torch.manual_seed(0)
    case = iou_case()
    # 12 wanted: 4 per interval; the top one has only 3, the missing one comes from the unused
    # negatives, all of which are in the lowest interval
    inds = neg_sampler()._sample_neg(case, 12)
    assert inds.numel() == 12 == inds.unique().numel()
    assert bool((case.gt_inds[inds] == 0).all())
    assert per_bin(inds, case.max_overlaps) == [5, 4, 3]
    # 6 wanted: 2 per interval exactly
    assert per_bin(neg_sampler()._sample_neg(case, 6), case.max_overlaps) == [2, 2, 2]
    # a random sampler would draw ~20/27 of them from the lowest interval
    counts = torch.zeros(3)
    random = detcore.build("task_util", {"type": "RandomSampler", "num": 100, "pos_fraction": 0.25})
    for _ in range(50):
        counts += torch.tensor(per_bin(random._sample_neg(case, 6), case.max_overlaps))
    assert counts[0] > 3 * counts[2]


def test_floor_negatives_get_their_fraction():
    torch.manual_seed(0)
    case = iou_case()
    # floor: IoU below 0.1 (10 negatives) gets half of 10; the rest over [0.1, 0.9) in 3 intervals
    inds = neg_sampler(floor_thr=0.1, floor_fraction=0.5)._sample_neg(case, 10)
    v = case.max_overlaps[inds]
    assert inds.numel() == 10 and int((v < 0.1).sum()) == 5


def test_all_negatives_when_they_fit_and_the_stateful_reference_floor():
    case = iou_case()
    assert neg_sampler()._sample_neg(case, 40).tolist() == list(range(2, 29))
    ious = torch.tensor([1.0] + [0.0] * 10 + [0.2] * 10)
    zero_case = AssignResult(1, torch.tensor([1] + [0] * 20), ious)
    plain, stateful = neg_sampler(), neg_sampler(reference_stateful_floor=True)
    torch.manual_seed(0)
    plain._sample_neg(zero_case, 6)
    stateful._sample_neg(zero_case, 6)
    assert plain.floor_thr == -1 and stateful.floor_thr == 0
    # from its second call the reference draws zero-IoU negatives only to fill a shortfall
    for _ in range(5):
        assert bool((ious[stateful._sample_neg(zero_case, 6)] > 0).all())
    drawn = torch.cat([plain._sample_neg(zero_case, 6) for _ in range(20)])
    assert bool((ious[drawn] == 0).any())  # no floor: the lowest interval holds both kinds


def pos_case() -> AssignResult:
    """10 positives of gt 1, 2 of gt 2, 1 of gt 3, then 5 negatives."""
    gt_inds = torch.tensor([1] * 10 + [2] * 2 + [3] + [0] * 5)
    return AssignResult(3, gt_inds, torch.full((18,), 0.7), torch.zeros(18, dtype=torch.long))


def pos_sampler():
    return detcore.build("task_util", {"type": "InstanceBalancedPosSampler", "num": 24, "pos_fraction": 0.25})


def per_gt(inds: torch.Tensor, case: AssignResult) -> list[int]:
    return [int((case.gt_inds[inds] == g).sum()) for g in (1, 2, 3)]


def test_positives_are_balanced_over_instances():
    torch.manual_seed(0)
    case = pos_case()
    # 6 wanted: round(6 / 3) + 1 = 3 per gt at most -> 3, 2, 1
    assert per_gt(pos_sampler()._sample_pos(case, 6), case) == [3, 2, 1]
    # 9 wanted: 4 per gt at most -> 4, 2, 1 = 7, topped up with 2 more of gt 1's
    inds = pos_sampler()._sample_pos(case, 9)
    assert inds.unique().numel() == 9 and per_gt(inds, case) == [6, 2, 1]
    # 2 wanted: 2 per gt at most -> 5 drawn, cut to 2 at random
    assert pos_sampler()._sample_pos(case, 2).numel() == 2
    # all 13 fit in 20
    assert sorted(pos_sampler()._sample_pos(case, 20).tolist()) == list(range(13))


def test_combined_sampler_as_the_roi_head_calls_it():
    torch.manual_seed(0)
    sampler = detcore.build("task_util", {
        "type": "CombinedSampler", "num": 12, "pos_fraction": 0.5, "add_gt_as_proposals": False,
        "pos_sampler": {"type": "InstanceBalancedPosSampler"},
        "neg_sampler": {"type": "IoUBalancedNegSampler", "floor_thr": -1, "floor_fraction": 0, "num_bins": 3},
    })  # fmt: skip
    assert sampler.neg_sampler.num == 12 and sampler.pos_sampler.pos_fraction == 0.5
    case = pos_case()
    case.max_overlaps = torch.tensor([0.9] * 13 + [0.05, 0.1, 0.4, 0.45, 0.7])
    boxes = torch.rand(18, 4) * 10
    boxes[:, 2:] += boxes[:, :2]
    result = sampler.sample(case, boxes, torch.zeros(3, 4), None, loss_fn=None, background_label=3)
    assert per_gt(result.pos_inds, case) == [3, 2, 1]
    assert sorted(result.neg_inds.tolist()) == [13, 14, 15, 16, 17]  # 6 wanted, 5 exist
    with pytest.raises(TypeError, match="neg_sampler"):
        detcore.build("task_util", {"type": "CombinedSampler", "num": 4, "pos_fraction": 0.5,
                                    "pos_sampler": {"type": "RandomSampler"},
                                    "neg_sampler": PseudoSampler()})  # fmt: skip
