"""The shared single-stage bases: BaseDenseHead (test numerics), AnchorHead (targets, losses),
BaseDetector/SingleStageDetector (forward contract, test-time augmentation)."""

from __future__ import annotations

import math

import pytest
import torch

import detcore
from detcore.models.dense_heads import AnchorHead, BaseDenseHead, unpack_gt_instances
from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.detectors.single_stage import SingleStageDetector, bbox_mapping_back
from detcore.structures.instances import Instances

ASSIGNER = {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0,
            "ignore_iof_thr": -1}
TEST_CFG = {"nms_pre": 1000, "min_bbox_size": 0, "score_thr": 0.05,
            "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 100}
# one level, stride 16, one 32x32 anchor per cell: anchor (i, j) = [16j - 16, 16i - 16, 16j + 16, 16i + 16]
ONE_ANCHOR = {"type": "AnchorGenerator", "scales": [2], "ratios": [1.0], "strides": [16]}
META = {"img_shape": (64, 64, 3), "pad_shape": (64, 64, 3), "scale_factor": [1.0, 1.0, 1.0, 1.0]}


def anchor_head(train_cfg=None, test_cfg=None, **kwargs) -> AnchorHead:
    """An AnchorHead (1x1 convs) over 4 input channels whose outputs are set by the biases only."""
    table = {"type": "AnchorHead", "num_classes": 2, "in_channels": 4, "anchor_generator": ONE_ANCHOR,
             "train_cfg": train_cfg, "test_cfg": test_cfg or dict(TEST_CFG), **kwargs}
    head = detcore.build("dense_head", table)
    with torch.no_grad():
        head.conv_cls.weight.zero_()
        head.conv_reg.weight.zero_()
        head.conv_cls.bias.zero_()
        head.conv_reg.bias.zero_()
    return head


def maps(head: AnchorHead, cls_bias_per_cell: dict, reg=(0.0, 0.0, 0.0, 0.0), size=4) -> tuple[list, list]:
    """Hand-made head outputs for one image: ``cls_bias_per_cell[(i, j)] = logits``, -10 elsewhere."""
    cls = torch.full((1, head.cls_out_channels, size, size), -10.0)
    for (i, j), logits in cls_bias_per_cell.items():
        cls[0, :, i, j] = torch.tensor(logits)
    bbox = torch.tensor(reg).view(1, 4, 1, 1).expand(1, 4, size, size).clone()
    return [cls], [bbox]


# -- helpers ----------------------------------------------------------------------------------------


def test_unpack_gt_instances_and_scale_factor():
    a = Instances(bboxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]), labels=torch.tensor([3]))
    ign = Instances(bboxes=torch.zeros(0, 4))
    boxes, labels, ignored = unpack_gt_instances([a], [ign])
    assert boxes[0] is a.bboxes and labels[0] is a.labels and ignored[0].shape == (0, 4)
    assert unpack_gt_instances([a])[2] is None
    with pytest.raises(ValueError, match="labels"):
        unpack_gt_instances([Instances(bboxes=torch.zeros(1, 4))])
    like = torch.zeros(1)
    assert scale_factor_tensor(2.0, like).tolist() == [2.0] * 4
    assert scale_factor_tensor((2.0, 3.0), like).tolist() == [2.0, 3.0, 2.0, 3.0]
    assert scale_factor_tensor([1.0, 2.0, 3.0, 4.0], like).tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="scale_factor"):
        scale_factor_tensor([1.0, 2.0, 3.0], like)


def test_anchor_head_is_registered_and_a_dense_head():
    entry = detcore.get_registry().get("dense_head", "AnchorHead")
    assert entry.plugin == "detcore.models" and issubclass(entry.factory, BaseDenseHead)
    assert detcore.get_registry().get("detector", "SingleStageDetector").factory is SingleStageDetector
    head = anchor_head()
    # softmax classification by default? no: the default loss is sigmoid cross-entropy -> num_classes outputs
    assert head.use_sigmoid_cls and head.cls_out_channels == 2
    cls, reg = head([torch.zeros(2, 4, 5, 6)])
    assert cls[0].shape == (2, 2, 5, 6) and reg[0].shape == (2, 4, 5, 6)


# -- training targets and losses --------------------------------------------------------------------


def test_sampled_softmax_losses_average_over_positives_and_negatives():
    # RandomSampler with room for every anchor -> 1 positive + 15 negatives, all sampled;
    # softmax cross-entropy and SmoothL1(beta=1/9), both averaged over the 16 sampled anchors
    train_cfg = {"assigner": ASSIGNER, "allowed_border": -1, "pos_weight": -1,
                 "sampler": {"type": "RandomSampler", "num": 256, "pos_fraction": 0.5, "neg_pos_ub": -1,
                             "add_gt_as_proposals": False}}
    head = anchor_head(train_cfg, loss_cls={"type": "CrossEntropyLoss", "use_sigmoid": False})
    assert head.sampling and head.cls_out_channels == 3
    logits = [0.5, -0.5, 1.0]  # classes 0, 1, background
    reg = [0.2, -0.1, 0.05, 0.0]
    with torch.no_grad():
        head.conv_cls.bias.copy_(torch.tensor(logits))
        head.conv_reg.bias.copy_(torch.tensor(reg))
    gt = Instances(bboxes=torch.tensor([[2.0, 2.0, 34.0, 34.0]]), labels=torch.tensor([1]))
    losses = head.loss([torch.randn(1, 4, 4, 4)], [gt], [META])

    log_z = math.log(sum(math.exp(v) for v in logits))
    ce = [log_z - v for v in logits]
    expected_cls = (ce[1] + 15 * ce[2]) / 16

    def smooth_l1(d, beta=1 / 9):
        d = abs(d)
        return 0.5 * d * d / beta if d < beta else d - 0.5 * beta

    target = [2 / 32, 2 / 32, 0.0, 0.0]
    expected_bbox = sum(smooth_l1(p - t) for p, t in zip(reg, target)) / 16
    assert float(losses["loss_cls"][0].detach()) == pytest.approx(expected_cls, rel=1e-5)
    assert float(losses["loss_bbox"][0].detach()) == pytest.approx(expected_bbox, rel=1e-5)


def test_allowed_border_excludes_anchors_outside_the_image():
    head = anchor_head({"assigner": ASSIGNER, "allowed_border": 0, "pos_weight": 2.0})
    anchors, flags = head.get_anchors([(4, 4)], [META, META])
    assert len(anchors) == 2 and anchors[0][0].shape == (16, 4) and bool(flags[0][0].all())
    gts = [torch.tensor([[2.0, 2.0, 34.0, 34.0]]), torch.tensor([[18.0, 18.0, 50.0, 50.0]])]
    labels, weights, targets, bbox_weights, num_pos, num_neg = head.get_targets(
        anchors, flags, gts, [META, META], gt_labels_list=[torch.tensor([0]), torch.tensor([1])]
    )
    # inside [0, 64) x [0, 64) with x2, y2 < 64: cells (i, j) with i, j in {1, 2} -> indices 5, 6, 9, 10
    inside = torch.zeros(16, dtype=torch.bool)
    inside[[5, 6, 9, 10]] = True
    for img, pos_index, label in ((0, 5, 0), (1, 10, 1)):
        expected_w = inside.float()
        expected_w[pos_index] = 2.0  # pos_weight
        assert torch.equal(weights[0][img], expected_w)
        expected_labels = torch.full((16,), 2)
        expected_labels[pos_index] = label
        assert torch.equal(labels[0][img], expected_labels)
        assert float(bbox_weights[0][img].sum()) == 4.0
    assert (num_pos, num_neg) == (2, 6)
    # the gt of image 1 is shifted by 16: its target deltas are those of image 0's
    torch.testing.assert_close(targets[0][1][10], targets[0][0][5])


def test_image_without_gt_has_only_negatives_and_counts_one_positive():
    head = anchor_head({"assigner": ASSIGNER, "allowed_border": -1, "pos_weight": -1},
                       loss_cls={"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25},
                       loss_bbox={"type": "L1Loss"})
    empty = Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    losses = head.loss([torch.randn(1, 4, 4, 4)], [empty], [META])
    p = 0.5  # zero logits
    expected = 32 * (-0.75 * p**2 * math.log(1 - p))  # 16 anchors x 2 classes, avg_factor max(0, 1) = 1
    assert float(losses["loss_cls"][0].detach()) == pytest.approx(expected, rel=1e-5)
    assert float(losses["loss_bbox"][0].detach()) == 0.0


# -- test numerics ----------------------------------------------------------------------------------


def test_nms_pre_keeps_the_candidates_with_the_best_class_score():
    # three far-apart cells pass score_thr; nms_pre = 2 keeps the two best by max class score
    head = anchor_head(test_cfg={**TEST_CFG, "nms_pre": 2})
    cls, reg = maps(head, {(0, 0): [-5.0, 1.0], (3, 3): [2.0, -5.0], (0, 3): [-5.0, 0.5]})
    (res,) = head.predict_by_feat(cls, reg, img_metas=[META])
    sig = torch.sigmoid
    assert res.labels.tolist() == [0, 1]
    torch.testing.assert_close(res.scores, sig(torch.tensor([2.0, 1.0])))
    # cell (3, 3): anchor [32, 32, 64, 64]; cell (0, 0): [-16, -16, 16, 16] clipped to [0, 0, 16, 16]
    torch.testing.assert_close(res.bboxes, torch.tensor([[32.0, 32.0, 64.0, 64.0], [0.0, 0.0, 16.0, 16.0]]))
    # without the nms_pre limit the third cell is detected too, and a class scoring exactly at the
    # threshold is not (score > score_thr)
    head.test_cfg["nms_pre"] = 1000
    (res,) = head.predict_by_feat(cls, reg, img_metas=[META])
    assert len(res) == 3 and res.labels.tolist() == [0, 1, 1]


def test_decoding_clips_to_img_shape_and_rescale_divides_by_scale_factor():
    head = anchor_head()
    # cell (1, 1): anchor [0, 0, 32, 32]; deltas dx = 0.5 (shift +16), dw = log 2 (width 64) -> x in [-8, 56]
    cls, reg = maps(head, {(1, 1): [3.0, -3.0]}, reg=(0.5, 0.0, math.log(2.0), 0.0))
    meta = {"img_shape": (40, 50, 3), "pad_shape": (64, 64, 3), "scale_factor": [2.0, 4.0, 2.0, 4.0]}
    (raw,) = head.predict_by_feat(cls, reg, img_metas=[meta], rescale=False)
    torch.testing.assert_close(raw.bboxes, torch.tensor([[0.0, 0.0, 50.0, 32.0]]))
    (res,) = head.predict_by_feat(cls, reg, img_metas=[meta], rescale=True)
    torch.testing.assert_close(res.bboxes, torch.tensor([[0.0, 0.0, 25.0, 8.0]]))


def test_score_factors_multiply_scores_after_the_threshold():
    head = anchor_head()
    cls, reg = maps(head, {(0, 0): [math.log(0.6 / 0.4), -9.0], (3, 3): [math.log(0.04 / 0.96), -9.0]})
    factors = [torch.full((1, 1, 4, 4), 20.0)]
    factors[0][0, 0, 0, 0] = 0.0  # sigmoid 0.5
    (res,) = head.predict_by_feat(cls, reg, factors, img_metas=[META])
    # cell (0, 0): 0.6 > 0.05, then x 0.5; cell (3, 3): 0.04 <= 0.05 is dropped whatever its factor
    assert len(res) == 1
    assert float(res.scores[0]) == pytest.approx(0.3, rel=1e-5)
    (cand,) = head.predict_by_feat(cls, reg, factors, img_metas=[META], with_nms=False)
    assert cand.scores.shape == (16, 2) and cand.score_factors.shape == (16,)
    assert float(cand.scores[0, 0]) == pytest.approx(0.6, rel=1e-5)
    assert float(cand.score_factors[0]) == pytest.approx(0.5, rel=1e-5)


def test_max_per_img_and_softmax_background_column():
    head = anchor_head(test_cfg={**TEST_CFG, "max_per_img": 3},
                       loss_cls={"type": "CrossEntropyLoss", "use_sigmoid": False})
    # every cell: softmax over (0.0, 2.0, 0.0) -> class 1 with e^2 / (e^2 + 2); background ignored
    cls = [torch.tensor([0.0, 2.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()]
    reg = [torch.zeros(1, 4, 4, 4)]
    (res,) = head.predict_by_feat(cls, reg, img_metas=[META])
    assert len(res) == 3 and res.labels.tolist() == [1, 1, 1]
    expected = math.exp(2) / (math.exp(2) + 2)
    torch.testing.assert_close(res.scores, torch.full((3,), expected))


def test_missing_test_cfg_is_a_clear_error():
    head = anchor_head()
    head.test_cfg = None
    cls, reg = maps(head, {})
    with pytest.raises(ValueError, match="test_cfg"):
        head.predict_by_feat(cls, reg, img_metas=[META])


# -- detectors --------------------------------------------------------------------------------------


def test_bbox_mapping_back_undoes_flip_then_scale():
    box = torch.tensor([[10.0, 5.0, 30.0, 25.0]])
    meta = {"img_shape": (50, 100, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0], "flip": True,
            "flip_direction": "horizontal"}
    torch.testing.assert_close(bbox_mapping_back(box, meta), torch.tensor([[35.0, 2.5, 45.0, 12.5]]))
    meta["flip_direction"] = "vertical"
    torch.testing.assert_close(bbox_mapping_back(box, meta), torch.tensor([[5.0, 12.5, 15.0, 22.5]]))
    meta["flip"] = False
    torch.testing.assert_close(bbox_mapping_back(box, meta), box / 2)


@pytest.fixture
def detector():
    pytest.importorskip("det_plugin_resnet", reason="det-plugin-resnet is not installed")
    torch.manual_seed(0)
    model = detcore.build("detector", {
        "type": "SingleStageDetector",
        "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8, "num_stages": 2, "strides": [1, 2],
                     "dilations": [1, 1], "out_indices": [1], "norm_eval": False},
        "bbox_head": {"type": "AnchorHead", "num_classes": 2, "in_channels": 16,
                      "anchor_generator": {"type": "AnchorGenerator", "scales": [4],
                                           "ratios": [0.5, 1.0, 2.0], "strides": [8]}},
        "train_cfg": {"assigner": ASSIGNER, "allowed_border": -1, "pos_weight": -1},
        "test_cfg": {**TEST_CFG, "score_thr": 0.0, "max_per_img": 20},
    })
    model.init_weights()
    return model


def test_single_stage_detector_forward_contract(detector):
    imgs = torch.randn(2, 3, 64, 64)
    metas = [dict(META, ori_shape=(32, 32, 3), scale_factor=[2.0] * 4), dict(META, ori_shape=(64, 64, 3))]
    gts = [Instances(bboxes=torch.tensor([[4.0, 4.0, 30.0, 40.0]]), labels=torch.tensor([1]))] * 2
    assert detector.bbox_head.train_cfg["allowed_border"] == -1  # the detector passed its cfgs on
    detector.train()
    losses = detector(imgs, metas, gts)
    assert set(losses) == {"loss_cls", "loss_bbox"} and all(torch.isfinite(v[0]) for v in losses.values())
    with pytest.raises(ValueError, match="gt_instances"):
        detector(imgs, metas)
    with pytest.raises(ValueError, match="img_metas"):
        detector(imgs, metas[:1], gts)
    detector.eval()
    with torch.no_grad():
        results = detector(imgs, metas)
    assert [type(r) for r in results] == [Instances, Instances]
    assert all(0 < len(r) <= 20 for r in results)
    assert float(results[0].bboxes.max()) <= 32.0 + 1e-4  # image 0 was upscaled 2x from 32x32


def test_aug_test_with_identical_augmentations_equals_plain_prediction(detector):
    detector.eval()
    imgs = torch.randn(1, 3, 64, 64)
    metas = [dict(META, ori_shape=(64, 64, 3), flip=False)]
    with torch.no_grad():
        plain = detector(imgs, metas)[0]
        merged = detector([imgs, imgs], [metas, metas])[0]
    # duplicates overlap with IoU 1 and are suppressed: the merge gives the plain detections
    torch.testing.assert_close(merged.bboxes, plain.bboxes)
    torch.testing.assert_close(merged.scores, plain.scores)
    assert torch.equal(merged.labels, plain.labels)
