"""FSAFHead: online feature selection on hand-made two-level cases (the instance trains only at the
level of smallest summed focal + IoU loss), the per-level loss collection and reweighting."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("det_plugin_fsaf", reason="det-plugin-fsaf is not installed")

from det_plugin_fsaf import FSAFHead  # noqa: E402

from detcore.structures.instances import Instances  # noqa: E402

ALPHA, GAMMA = 0.25, 2.0


def focal_pos(logit: float) -> float:
    """The focal loss of a positive with logit ``logit``: -alpha (1 - p)^gamma log p."""
    p = 1 / (1 + math.exp(-logit))
    return -ALPHA * (1 - p) ** GAMMA * math.log(p)


def float_(value: torch.Tensor) -> float:
    return float(value.detach())


def two_level_head(**kwargs) -> FSAFHead:
    return FSAFHead(
        num_classes=2, in_channels=4, stacked_convs=0, **kwargs,
        anchor_generator={"type": "AnchorGenerator", "octave_base_scale": 1, "scales_per_octave": 1,
                          "ratios": [1.0], "strides": [8, 16]},
        train_cfg={"assigner": {"type": "CenterRegionAssigner", "pos_scale": 0.2, "neg_scale": 0.2,
                                "min_pos_iof": 0.01}, "allowed_border": -1, "pos_weight": -1},
    )  # fmt: skip


def hand_made_outputs(logit_l0: float, logit_l1: float, top_l1: float, bottom_l1: float):
    """One 64x64 image, one box 16..48 of class 1. Its only effective prior at stride 8 is the one
    centred at (32, 32) (index 4 * 8 + 4), at stride 16 the one centred at (32, 32) (index 2 * 4 + 2).
    Every logit is -10 except class 1 at those two priors; the regression is exact (16 px each side)
    at level 0 and at level 1 except the top / bottom distances ``top_l1`` / ``bottom_l1`` px."""
    cls0 = torch.full((1, 2, 8, 8), -10.0)
    cls1 = torch.full((1, 2, 4, 4), -10.0)
    cls0[0, 1, 4, 4] = logit_l0
    cls1[0, 1, 2, 2] = logit_l1
    reg0 = torch.full((1, 4, 8, 8), 0.5)  # 16 px / (8 * 4)
    reg1 = torch.full((1, 4, 4, 4), 0.25)  # 16 px / (16 * 4)
    reg1[0, 0, 2, 2] = top_l1 / 64  # tblr order: top, bottom, left, right
    reg1[0, 1, 2, 2] = bottom_l1 / 64
    outs = [t.requires_grad_() for t in (cls0, cls1, reg0, reg1)]
    gts = [Instances(bboxes=torch.tensor([[16.0, 16.0, 48.0, 48.0]]), labels=torch.tensor([1]))]
    metas = [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), batch_input_shape=(64, 64))]
    return outs, gts, metas


def test_instance_goes_to_the_level_with_the_smaller_summed_loss_not_the_better_box():
    """Level 0: exact box (IoU loss 0) but a poor score (logit -3, focal 0.692); level 1: box of IoU
    0.75 (-ln 0.75 = 0.288) and logit 0 (focal 0.043). Sum: 0.692 vs 0.331 -> level 1."""
    head = two_level_head()
    (cls0, cls1, reg0, reg1), gts, metas = hand_made_outputs(-3.0, 0.0, top_l1=16.0, bottom_l1=8.0)
    losses = head.loss_by_feat([cls0, cls1], [reg0, reg1], gts, metas)
    assert set(losses) == {"loss_cls", "loss_bbox", "num_pos", "pos_recall"}
    assert float_(losses["pos_recall"]) == 100.0
    assert float_(losses["num_pos"]) == 1.0  # one final positive (was one per level before selection)
    assert float_(losses["loss_bbox"][0]) == 0.0
    assert float_(losses["loss_bbox"][1]) == pytest.approx(-math.log(0.75), abs=1e-4)
    assert float_(losses["loss_cls"][1]) == pytest.approx(focal_pos(0.0), abs=1e-4)
    assert float_(losses["loss_cls"][0]) < 1e-6  # the class-1 term at the unselected level is dropped
    # the dropped level gets no gradient from the instance's class or box
    sum(losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert cls0.grad[0, 1, 4, 4].abs() < 1e-8 and reg0.grad.abs().max() == 0
    assert cls1.grad[0, 1, 2, 2] < 0 and reg1.grad[0, 1, 2, 2] < 0  # score and bottom distance grow


def test_worse_regression_at_level_1_moves_the_instance_to_level_0():
    """Level 1's box is now y 28..36 (IoU 8 / 32 = 0.25, -ln 0.25 = 1.386): 0.692 < 1.43 -> level 0.
    With ``score_threshold`` 0.5 the selected positive (p = 0.047) does not count as recalled."""
    head = two_level_head(score_threshold=0.5)
    (cls0, cls1, reg0, reg1), gts, metas = hand_made_outputs(-3.0, 0.0, top_l1=4.0, bottom_l1=4.0)
    losses = head.loss_by_feat([cls0, cls1], [reg0, reg1], gts, metas)
    assert float_(losses["num_pos"]) == 1.0
    assert float_(losses["loss_cls"][0]) == pytest.approx(focal_pos(-3.0), abs=1e-4)
    assert float_(losses["loss_bbox"][0]) == pytest.approx(0.0, abs=1e-4)
    assert float_(losses["loss_bbox"][1]) == 0.0 and float_(losses["loss_cls"][1]) < 1e-6
    assert float_(losses["pos_recall"]) == 0.0
    assert float(two_level_head().loss_by_feat([cls0, cls1], [reg0, reg1], gts, metas)["pos_recall"]) == 100


def test_collect_and_reweight_with_chosen_losses():
    """Two gts, two levels, chosen per-prior losses: gt 0 has mean 1.5 at level 0 and 3 at level 1
    (-> level 0); gt 1 has 5 at level 0 and 2 at level 1 (-> level 1); a gt absent from a level
    counts 1e6 there."""
    cls_l0 = torch.tensor([[1.0, 0.0], [2.0, 0.0], [4.0, 1.0], [0.5, 0.5]])  # summed: 1, 2, 5, 1
    reg_l0 = torch.zeros(4)
    gts_l0 = torch.tensor([0, 0, 1, -1])
    cls_l1 = torch.tensor([[0.0, 1.0], [0.0, 0.25]])
    reg_l1 = torch.tensor([1.0, 1.75])  # summed: 2, 2
    gts_l1 = torch.tensor([1, -1])
    level0 = FSAFHead.collect_loss_level_single(cls_l0, reg_l0, gts_l0, num_gts=3)
    level1 = FSAFHead.collect_loss_level_single(cls_l1, reg_l1, gts_l1, num_gts=3)
    assert level0.tolist() == [1.5, 5.0, 1e6]
    assert level1.tolist() == [1e6, 2.0, 1e6]
    min_levels = torch.stack([level0, level1]).argmin(dim=0)
    assert min_levels.tolist()[:2] == [0, 1]
    labels_l0 = torch.tensor([0, 0, 1, 2])  # 2 = background
    cls_sum, reg_sum, pos = FSAFHead.reweight_loss_single(
        cls_l0, torch.tensor([0.5, 0.5, 0.5, 0.0]), gts_l0, labels_l0, 0, min_levels=min_levels)
    # gt 1's prior (index 2) is dropped at level 0: its class-1 term (1.0) and its box loss go
    assert pos.tolist() == [True, True, False, False]
    assert float(cls_sum) == pytest.approx(1 + 2 + 4 + 0.5 + 0.5)
    assert float(reg_sum) == pytest.approx(1.0)


def test_configuration_errors_are_clear():
    with pytest.raises(ValueError, match="reduction = 'none'"):
        FSAFHead(2, 4, loss_bbox={"type": "IoULoss", "reduction": "mean"})
    with pytest.raises(ValueError, match="one prior per location"):
        FSAFHead(2, 4, anchor_generator={"type": "AnchorGenerator", "octave_base_scale": 1,
                                         "scales_per_octave": 1, "ratios": [0.5, 1.0], "strides": [8]})
    with pytest.raises(ValueError, match="reg_decoded_bbox"):
        FSAFHead(2, 4, reg_decoded_bbox=False)


def test_neighbour_level_ignoring_region_drops_the_class_loss_there():
    """The paper's adjacent-level ignoring regions (``neighbour_ignore_scale``, off in the reference):
    box 8..56 of class 1 selected at level 1 (stride 16: exact box, logit 3) rather than level 0
    (stride 8: poor boxes). At level 0 its region shrunk to 0.8 (12.8..51.2) holds the priors centred
    at 16..48 (5 x 5); their class-1 terms get no gradient, the class-1 terms outside it and the
    class-0 terms inside it keep theirs. Without the option only the level-0 positives lose their
    class-1 term: the core is 27.2..36.8, so the prior at (32, 32) and its 4 edge neighbours overlap it
    by 0.8 x 8 px = 0.1 of their area, the 4 corner ones by 0.8 x 0.8 = exactly 0.01 (not above
    ``min_pos_iof``)."""
    gts = [Instances(bboxes=torch.tensor([[8.0, 8.0, 56.0, 56.0]]), labels=torch.tensor([1]))]
    metas = [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), batch_input_shape=(64, 64))]

    def grads(**kwargs):
        cls0 = torch.zeros(1, 2, 8, 8, requires_grad=True)
        cls1 = torch.full((1, 2, 4, 4), -10.0)
        cls1[0, 1, 2, 2] = 3.0
        cls1.requires_grad_()
        reg0 = torch.full((1, 4, 8, 8), 0.05, requires_grad=True)  # 1.6 px to each side: tiny boxes
        reg1 = torch.full((1, 4, 4, 4), 0.375, requires_grad=True)  # 24 px / (16 * 4): exact
        losses = two_level_head(**kwargs).loss_by_feat([cls0, cls1], [reg0, reg1], gts, metas)
        assert float_(losses["num_pos"]) == 1.0  # selected at level 1
        sum(losses["loss_cls"] + losses["loss_bbox"]).backward()
        return cls0.grad[0]

    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:7, 2:7] = True  # centres 16..48
    core = torch.zeros(8, 8, dtype=torch.bool)
    core[3:6, 4] = core[4, 3:6] = True  # the plus around the centre (32, 32)
    with_option = grads(neighbour_ignore_scale=0.8)
    assert (with_option[1][region] == 0).all() and (with_option[1][~region] != 0).all()
    assert (with_option[0] != 0).all()
    without = grads()
    assert (without[1][core] == 0).all() and (without[1][~core] != 0).all()


def test_detection_is_the_hand_decoded_distances_in_original_coordinates():
    """One confident location: stride 16, row 2, column 1 -> prior centre (16, 32); distances (0.25,
    0.125, 0.125, 0.5) x 4 x 16 = top 16, bottom 8, left 8, right 32 px -> box (8, 16, 48, 40) in the
    2x enlarged input, (4, 8, 24, 20) in the original image."""
    head = two_level_head(test_cfg={"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05,
                                    "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100})
    cls0, cls1 = torch.full((1, 2, 8, 8), -10.0), torch.full((1, 2, 4, 4), -10.0)
    cls1[0, 0, 2, 1] = 5.0
    reg0, reg1 = torch.full((1, 4, 8, 8), 0.1), torch.full((1, 4, 4, 4), 0.1)
    reg1[0, :, 2, 1] = torch.tensor([0.25, 0.125, 0.125, 0.5])
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), ori_shape=(32, 32, 3),
                scale_factor=[2.0, 2.0, 2.0, 2.0], batch_input_shape=(64, 64))
    (result,) = head.predict_by_feat([cls0, cls1], [reg0, reg1], img_metas=[meta], rescale=True)
    assert len(result) == 1
    assert torch.allclose(result.bboxes, torch.tensor([[4.0, 8.0, 24.0, 20.0]]))
    assert result.labels.tolist() == [0]
    assert float(result.scores[0]) == pytest.approx(1 / (1 + math.exp(-5.0)), abs=1e-5)
