"""Assigners and samplers on hand-made boxes with hand-derived assignments."""

from __future__ import annotations

import pytest
import torch

from detcore.models.task_utils import (
    AssignResult,
    ATSSAssigner,
    MaxIoUAssigner,
    OHEMSampler,
    PointAssigner,
    PseudoSampler,
    RandomSampler,
)

BOXES = torch.tensor([[0.0, 0, 10, 10], [10, 10, 20, 20], [5, 5, 15, 15], [32, 32, 38, 42]])
GTS = torch.tensor([[0.0, 0, 10, 9], [0, 10, 10, 19]])
LABELS = torch.tensor([2, 3])


def test_max_iou_assigner_with_low_quality_matches():
    # IoU(b0, g0) = 90/100; b2 overlaps g0 by 20/170 and g1 by 25/165 (its best gt, and g1's best box)
    result = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.5).assign(BOXES, GTS, gt_labels=LABELS)
    assert result.gt_inds.tolist() == [1, 0, 2, 0]
    assert result.labels.tolist() == [2, -1, 3, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([0.9, 0.0, 25 / 165, 0.0]))
    assert result.num_gts == 2 and result.num_preds == 4


def test_max_iou_assigner_options():
    no_lq = MaxIoUAssigner(0.5, 0.5, match_low_quality=False).assign(BOXES, GTS)
    assert no_lq.gt_inds.tolist() == [1, 0, 0, 0] and no_lq.labels is None
    # negatives only with IoU in [0.05, 0.5): the zero-overlap boxes become ignored
    band = MaxIoUAssigner(0.5, [0.05, 0.5]).assign(BOXES, GTS)
    assert band.gt_inds.tolist() == [1, -1, 2, -1]
    # b3 lies 48/60 inside the ignored region -> ignored
    ign = MaxIoUAssigner(0.5, 0.5, ignore_iof_thr=0.5).assign(
        BOXES, GTS, gt_bboxes_ignore=torch.tensor([[30.0, 30, 40, 40]])
    )
    assert ign.gt_inds.tolist() == [1, 0, 2, -1]
    # more gts than gpu_assign_thr: same result (computed on the CPU)
    assert MaxIoUAssigner(0.5, 0.5, gpu_assign_thr=1).assign(BOXES, GTS).gt_inds.tolist() == [1, 0, 2, 0]


def test_max_iou_assigner_ties_and_empty():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    boxes = torch.tensor([[0.0, 0, 10, 20], [0, -10, 10, 10], [50, 50, 60, 60]])  # IoU 0.5, 0.5, 0
    assert MaxIoUAssigner(0.7, 0.3).assign(boxes, gt).gt_inds.tolist() == [1, 1, 0]
    assert MaxIoUAssigner(0.7, 0.3, gt_max_assign_all=False).assign(boxes, gt).gt_inds.tolist() == [1, -1, 0]
    empty_gt = MaxIoUAssigner(0.5, 0.5).assign(boxes, torch.zeros((0, 4)), gt_labels=torch.zeros(0).long())
    assert empty_gt.gt_inds.tolist() == [0, 0, 0] and empty_gt.labels.tolist() == [-1, -1, -1]
    assert MaxIoUAssigner(0.5, 0.5).assign(torch.zeros((0, 4)), gt).gt_inds.numel() == 0
    with pytest.raises(ValueError, match="pair"):
        MaxIoUAssigner(0.5, [0.1, 0.2, 0.3])


def test_atss_assigner_two_levels():
    # level 0: a0, a1; level 1: a2, a3; topk 2 -> all four are candidates of both gts.
    # g0 IoUs (0.694, 0, 0.36, 0.36): mean + std = 0.637 -> a0.  g1 IoUs (0.25, 0, 1, 0.391): thr 0.835 -> a2.
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 20, 20], [-5, -5, 15, 15]])
    gts = torch.tensor([[0.0, 0, 12, 12], [0, 0, 20, 20]])
    result = ATSSAssigner(topk=2).assign(anchors, [2, 2], gts, gt_labels=torch.tensor([5, 7]))
    assert result.gt_inds.tolist() == [1, 0, 2, 0]
    assert result.labels.tolist() == [5, -1, 7, -1]


def test_atss_assigner_conflict_goes_to_highest_iou():
    # a0 is positive for both gts; IoU 100/110 with g0 and 110/120 with g1 -> g1 wins
    anchors = torch.tensor([[0.0, 0, 10, 11], [30, 30, 40, 40], [40, 40, 50, 50], [50, 50, 60, 60]])
    gts = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12]])
    result = ATSSAssigner(topk=4).assign(anchors, [4], gts)
    assert result.gt_inds.tolist() == [2, 0, 0, 0]
    with pytest.raises(ValueError, match="num_level_bboxes"):
        ATSSAssigner(topk=4).assign(anchors, [3], gts)


def test_point_assigner():
    # level 3 (stride 8) points p0..p3, level 4 (stride 16) p4, p5
    points = torch.tensor([[4.0, 4, 8], [12, 4, 8], [20, 4, 8], [4, 12, 8], [8, 8, 16], [24, 8, 16]])
    # g0 (12 px, level clamped up to 3): nearest p0. g1 (64 px -> level 4): centre (32, 32), nearest p5.
    gts = torch.tensor([[0.0, 0, 12, 12], [0, 0, 64, 64]])
    result = PointAssigner(scale=4, pos_num=1).assign(points, gts, gt_labels=torch.tensor([1, 4]))
    assert result.gt_inds.tolist() == [1, 0, 0, 0, 0, 2]
    assert result.labels.tolist() == [1, -1, -1, -1, -1, 4]


def _assign(gt_inds, labels=None, num_gts=3):
    gt_inds = torch.tensor(gt_inds)
    return AssignResult(num_gts, gt_inds, torch.zeros(len(gt_inds)), labels=labels)


def test_random_sampler_counts_and_targets():
    torch.manual_seed(0)
    gts = torch.tensor([[0.0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]])
    boxes = torch.arange(32.0).view(8, 4)
    gt_inds = [1, 0, 2, 0, 0, -1, 0, 3]
    labels = torch.tensor([10, -1, 11, -1, -1, -1, -1, 12])
    sampler = RandomSampler(num=4, pos_fraction=0.5, add_gt_as_proposals=False)
    res = sampler.sample(_assign(gt_inds, labels), boxes, gts)
    assert len(res.pos_inds) == 2 and set(res.pos_inds.tolist()) <= {0, 2, 7}
    assert len(res.neg_inds) == 2 and set(res.neg_inds.tolist()) <= {1, 3, 4, 6}
    expect_gt = {0: 0, 2: 1, 7: 2}
    for i, pos in enumerate(res.pos_inds.tolist()):
        assert res.pos_assigned_gt_inds[i] == expect_gt[pos]
        torch.testing.assert_close(res.pos_gt_bboxes[i], gts[expect_gt[pos]])
        torch.testing.assert_close(res.pos_bboxes[i], boxes[pos])
        assert res.pos_gt_labels[i] == labels[pos]
    assert res.pos_is_gt.sum() == 0 and res.bboxes.shape == (4, 4)


def test_random_sampler_gt_as_proposals_and_neg_pos_ub():
    gts = torch.tensor([[0.0, 0, 1, 1]])
    boxes = torch.arange(24.0).view(6, 4)
    assign = _assign([0, 0, 0, 0, 0, 1], torch.tensor([-1, -1, -1, -1, -1, 5]), num_gts=1)
    res = RandomSampler(num=100, pos_fraction=0.5, neg_pos_ub=2).sample(assign, boxes, gts, torch.tensor([5]))
    # the gt joins as box 0 (positive, is_gt), box 5 becomes 6; 2 positives -> at most 4 negatives
    assert res.pos_inds.tolist() == [0, 6] and res.pos_is_gt.tolist() == [1, 0]
    assert len(res.neg_inds) == 4 and res.pos_gt_labels.tolist() == [5, 5]
    torch.testing.assert_close(res.pos_bboxes[0], gts[0])
    with pytest.raises(ValueError, match="gt_labels"):
        RandomSampler(num=4, pos_fraction=0.5).sample(_assign([0, 1]), boxes[:2], gts)


def test_pseudo_sampler_takes_everything():
    gts = torch.tensor([[0.0, 0, 1, 1], [1, 1, 2, 2]])
    boxes = torch.arange(20.0).view(5, 4)
    res = PseudoSampler().sample(_assign([2, 0, -1, 1, 0], num_gts=2), boxes, gts)
    assert res.pos_inds.tolist() == [0, 3] and res.neg_inds.tolist() == [1, 4]
    torch.testing.assert_close(res.pos_gt_bboxes, gts[[1, 0]])


def test_ohem_sampler_keeps_highest_loss():
    gts = torch.tensor([[0.0, 0, 1, 1]])
    boxes = torch.tensor([[float(i), 0, i + 1, 1] for i in range(6)])
    assign = _assign([1, 0, 0, 1, 0, 0], torch.tensor([3, -1, -1, 3, -1, -1]), num_gts=1)
    seen = []

    def loss_fn(bboxes, labels):  # "loss" = x1, so the right-most boxes are the hardest
        seen.append(labels.tolist())
        return bboxes[:, 0]

    sampler = OHEMSampler(num=3, pos_fraction=0.34, add_gt_as_proposals=False)
    res = sampler.sample(assign, boxes, gts, torch.tensor([3]), loss_fn=loss_fn, background_label=80)
    assert res.pos_inds.tolist() == [3]  # one positive of two: the higher loss
    assert sorted(res.neg_inds.tolist()) == [4, 5]  # two negatives of four: the highest losses
    assert seen == [[3, 3], [80, 80, 80, 80]]
    with pytest.raises(ValueError, match="loss_fn"):
        sampler.sample(assign, boxes, gts)
