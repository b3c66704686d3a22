"""RetinaNet: checkpoint layout, train/eval forward contract, hand-computed losses and detections."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import Config
from detcore.structures.instances import Instances
from detcore.testing import (
    check_detections,
    check_reference_checkpoint_loads,
    check_reference_layout,
    load_validated_config,
    two_image_batch,
)

pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "retinanet"
STANDARD = ["retinanet_r50_fpn_1x_coco", "retinanet_r101_fpn_1x_coco", "retinanet_x101_64x4d_fpn_1x_coco"]


def load(name: str) -> Config:
    return load_validated_config(CONFIGS / f"{name}.toml")


def tiny_model(num_classes: int = 3, **test_cfg) -> torch.nn.Module:
    """The shapes config's model with the given test settings, initialised with a fixed seed."""
    cfg = load("retinanet_shapes")
    model_cfg = cfg.to_dict()["model"]
    model_cfg["bbox_head"]["num_classes"] = num_classes
    model_cfg["test_cfg"].update(test_cfg)
    torch.manual_seed(0)
    model = detcore.build("detector", model_cfg)
    model.init_weights()
    return model


# -- checkpoint layout ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", STANDARD)
def test_state_dict_matches_reference_checkpoint(name):
    check_reference_layout(load(name)["model"], name)


def test_reference_format_checkpoint_loads_through_init_detector(tmp_path):
    name = "retinanet_r50_fpn_1x_coco"
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


# -- forward contract ----------------------------------------------------------------------------


def test_train_forward_returns_reference_losses():
    model = tiny_model()
    model.train()
    losses = model(**two_image_batch())
    assert set(losses) == {"loss_cls", "loss_bbox"}
    for name, per_level in losses.items():
        assert len(per_level) == 5, name  # one per FPN level
        assert all(torch.isfinite(v) and v.dim() == 0 for v in per_level), name
    total = sum(sum(v) for v in losses.values())
    total.backward()
    assert model.bbox_head.retina_cls.weight.grad.abs().sum() > 0
    # the prior (p = 0.01 everywhere) makes the classification loss of the finest level ~ 1.14 per positive
    # focal term -0.25 * 0.99**2 * log(0.01) plus tiny negative terms: the total is close to it
    assert 0.5 < float(sum(losses["loss_cls"]).detach()) < 2.0


def test_eval_forward_gives_instances_in_original_coordinates():
    model = tiny_model(score_thr=0.0, max_per_img=7)
    model.eval()
    batch = two_image_batch()
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    # boxes were clipped to img_shape then divided by scale_factor: inside the original image
    check_detections(results, batch["img_metas"], max_per_img=7, num_classes=3, atol=1e-4)
    # image 0 was upscaled 2x: its raw detections (rescale=False) are twice the returned ones
    with torch.no_grad():
        raw = model.predict(batch["imgs"], batch["img_metas"], rescale=False)
    torch.testing.assert_close(raw[0].bboxes / 2, results[0].bboxes)


# -- hand-computed case ---------------------------------------------------------------------------


def _hand_head(reg_bias: list[float], cls_bias: float, **test_cfg):
    """A RetinaHead with one level (stride 16, one 32x32 anchor per cell), two classes, and zero conv
    weights, so every location predicts ``cls_bias`` logits and ``reg_bias`` deltas."""
    head = detcore.build(
        "dense_head",
        {
            "type": "RetinaHead",
            "num_classes": 2,
            "in_channels": 4,
            "feat_channels": 4,
            "stacked_convs": 1,
            "anchor_generator": {
                "type": "AnchorGenerator",
                "octave_base_scale": 2,
                "scales_per_octave": 1,
                "ratios": [1.0],
                "strides": [16],
            },
            "train_cfg": {
                "assigner": {
                    "type": "MaxIoUAssigner",
                    "pos_iou_thr": 0.5,
                    "neg_iou_thr": 0.4,
                    "min_pos_iou": 0,
                    "ignore_iof_thr": -1,
                },
                "allowed_border": -1,
                "pos_weight": -1,
            },
            "test_cfg": {
                "nms_pre": 1000,
                "min_bbox_size": 0,
                "score_thr": 0.05,
                "nms": {"type": "nms", "iou_threshold": 0.5},
                "max_per_img": 100,
                **test_cfg,
            },
        },
    )
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.retina_cls.bias.fill_(cls_bias)
        head.retina_reg.bias.copy_(torch.tensor(reg_bias))
    return head


def test_losses_match_hand_computation_for_one_box():
    reg_bias = [0.1, -0.2, 0.3, 0.05]
    head = _hand_head(reg_bias, cls_bias=-1.0)
    feats = [torch.randn(1, 4, 4, 4)]  # 4x4 cells of a 64x64 image
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=[1.0] * 4)
    # anchors are [16j - 16, 16i - 16, 16j + 16, 16i + 16]; the gt overlaps cell (1, 1) = [0, 0, 32, 32]
    # with IoU 900 / 1148 = 0.78 and every other anchor with IoU < 0.36: exactly one positive, index 5
    gt = Instances(bboxes=torch.tensor([[2.0, 2.0, 34.0, 34.0]]), labels=torch.tensor([1]))
    losses = head.loss(feats, [gt], [meta])

    p = 1 / (1 + math.exp(1.0))  # sigmoid(-1)
    pos_term = -0.25 * (1 - p) ** 2 * math.log(p)  # anchor 5, class 1
    neg_term = -0.75 * p**2 * math.log(1 - p)  # every other (anchor, class) pair
    expected_cls = (pos_term + (16 * 2 - 1) * neg_term) / 1  # averaged over 1 positive
    # deltas of anchor [0, 0, 32, 32] to gt [2, 2, 34, 34]: (2/32, 2/32, log 1, log 1)
    target = [2 / 32, 2 / 32, 0.0, 0.0]
    expected_bbox = sum(abs(b - t) for b, t in zip(reg_bias, target))

    assert len(losses["loss_cls"]) == 1
    assert float(losses["loss_cls"][0].detach()) == pytest.approx(expected_cls, rel=1e-5)
    assert float(losses["loss_bbox"][0].detach()) == pytest.approx(expected_bbox, rel=1e-5)

    # the assignment itself
    anchors, flags = head.get_anchors([(4, 4)], [meta])
    torch.testing.assert_close(anchors[0][0][5], torch.tensor([0.0, 0.0, 32.0, 32.0]))
    labels, label_weights, bbox_targets, bbox_weights, num_pos, num_neg = head.get_targets(
        anchors, flags, [gt.bboxes], [meta], gt_labels_list=[gt.labels]
    )
    expected_labels = torch.full((1, 16), 2, dtype=torch.long)
    expected_labels[0, 5] = 1
    assert torch.equal(labels[0], expected_labels)
    assert torch.equal(label_weights[0], torch.ones(1, 16))
    assert (num_pos, num_neg) == (1, 15)
    torch.testing.assert_close(bbox_targets[0][0, 5], torch.tensor(target))
    assert float(bbox_weights[0].sum()) == 4.0


def test_detections_match_hand_computation():
    # every cell predicts class 0 with sigmoid(2) and deltas 0: the detections are the anchors
    # clipped to the image; the 4 inner ones overlap their neighbours with IoU 1/3 < 0.5, so more than
    # max_per_img candidates survive NMS
    head = _hand_head([0.0, 0.0, 0.0, 0.0], cls_bias=0.0, max_per_img=10)
    with torch.no_grad():
        head.retina_cls.bias.copy_(torch.tensor([2.0, -3.0]))
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=[2.0, 2.0, 2.0, 2.0])
    (res,) = head.predict([torch.zeros(1, 4, 4, 4)], [meta], rescale=True)
    assert len(res) == 10  # max_per_img of the 16 candidates
    assert torch.equal(res.labels, torch.zeros(10, dtype=torch.long))
    torch.testing.assert_close(res.scores, torch.full((10,), 1 / (1 + math.exp(-2.0))))
    clipped = {
        (max(16 * j - 16, 0) / 2, max(16 * i - 16, 0) / 2, min(16 * j + 16, 64) / 2, min(16 * i + 16, 64) / 2)
        for i in range(4)
        for j in range(4)
    }
    got = {tuple(round(v, 4) for v in box) for box in res.bboxes.tolist()}
    assert got <= clipped and len(got) == 10


def test_head_init_uses_the_prior_probability():
    torch.manual_seed(0)
    head = detcore.build(
        "dense_head",
        {"type": "RetinaHead", "num_classes": 5, "in_channels": 32, "feat_channels": 32, "test_cfg": None},
    )
    head.init_weights()
    # 9 anchors x 5 classes; bias -log((1 - 0.01) / 0.01) so that sigmoid(bias) = 0.01
    assert head.retina_cls.weight.shape == (45, 32, 3, 3) and head.retina_reg.weight.shape == (36, 32, 3, 3)
    torch.testing.assert_close(head.retina_cls.bias, torch.full((45,), -math.log(99.0)))
    assert float(head.retina_reg.bias.detach().abs().max()) == 0.0
    for conv in (head.cls_convs[0].conv, head.reg_convs[3].conv, head.retina_reg):
        assert abs(float(conv.weight.detach().std()) - 0.01) < 0.002
    assert len(head.cls_convs) == len(head.reg_convs) == 4
