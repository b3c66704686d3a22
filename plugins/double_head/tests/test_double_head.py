"""Double-Head R-CNN: reference layout and count, reference checkpoint loading, the regression branch
pooling enlarged RoIs, the routing of the two losses to the two branches, training and inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.structures.instances import Instances
from detcore.testing import (
    check_detections,
    check_loss_falls,
    check_reference_checkpoint_loads,
    fake_batch,
    load_validated_config,
    reference_keys_or_skip,
)

pytest.importorskip("det_plugin_double_head", reason="det-plugin-double-head is not installed")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "double_heads"
NAME = "dh_faster_rcnn_r50_fpn_1x_coco"


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


def shapes_model(**test_cfg) -> torch.nn.Module:
    table = model_table("dh_faster_rcnn_shapes")
    table["test_cfg"]["rcnn"].update(test_cfg)
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_layout_and_parameter_count_match_the_reference():
    count, entries = reference_keys_or_skip(NAME)
    with torch.device("meta"):
        model = detcore.build("detector", model_table(NAME))
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == entries
    assert sum(p.numel() for p in model.parameters()) == count
    head = model.roi_head.bbox_head
    assert head.loss_cls.loss_weight == 2.0 and head.loss_bbox.loss_weight == 2.0
    assert model.roi_head.reg_roi_scale_factor == 1.3


def test_reference_checkpoint_loads(tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{NAME}.toml", NAME, tmp_path)


def test_regression_branch_pools_the_rois_enlarged_about_their_centres():
    model = shapes_model()
    roi_head = model.roi_head
    feats = [torch.randn(1, 32, 32 // 2**i, 32 // 2**i) for i in range(4)]  # strides 4 to 32
    rois = torch.tensor([[0.0, 10.0, 10.0, 30.0, 50.0], [0.0, 40.0, 20.0, 100.0, 60.0]])
    # 1.3x about the centre: (20, 30) with 26 x 52, (70, 40) with 78 x 52
    enlarged = torch.tensor([[0.0, 7.0, 4.0, 33.0, 56.0], [0.0, 31.0, 14.0, 109.0, 66.0]])
    torch.testing.assert_close(roi_head.bbox_roi_extractor.roi_rescale(rois, 1.3), enlarged)
    seen = {}

    def record(x_cls, x_reg):
        seen.update(cls=x_cls, reg=x_reg)
        return torch.zeros(len(x_cls), 4), torch.zeros(len(x_cls), 12)

    roi_head.bbox_head.forward = record
    out = roi_head._bbox_forward(feats, rois)
    extractor = roi_head.bbox_roi_extractor
    torch.testing.assert_close(seen["cls"], extractor(feats, rois))
    torch.testing.assert_close(seen["reg"], extractor(feats, rois, roi_scale_factor=1.3))
    assert not torch.allclose(seen["cls"], seen["reg"])
    assert out["bbox_feats"] is seen["cls"]
    # both RoIs map to level 0 by their own size (sqrt(wh) < 112), so the enlarged boxes pool there
    one_level = extractor(feats[:1], enlarged, roi_scale_factor=None)
    torch.testing.assert_close(seen["reg"], one_level)


def test_the_cls_loss_trains_the_fc_branch_and_the_box_loss_the_conv_branch():
    model = shapes_model()
    model.train()
    losses = model(**fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2))
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= set(losses)
    head = model.roi_head.bbox_head
    fc_params = list(head.fc_branch.parameters()) + list(head.fc_cls.parameters())
    conv_params = (list(head.res_block.parameters()) + list(head.conv_branch.parameters())
                   + list(head.fc_reg.parameters()))  # fmt: skip
    routes = (("loss_cls", fc_params, conv_params), ("loss_bbox", conv_params, fc_params))
    for name, reaches, misses in routes:
        grads = torch.autograd.grad(losses[name], reaches + misses, retain_graph=True, allow_unused=True)
        got, other = grads[: len(reaches)], grads[len(reaches):]
        assert all(g is not None for g in got) and sum(float(g.abs().sum()) for g in got) > 0, name
        assert all(g is None or float(g.abs().sum()) == 0 for g in other), name


def test_training_lowers_the_losses():
    model = shapes_model()
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.85)  # fmt: skip


def fixed_proposals(gt_instances: list[Instances]) -> list[Instances]:
    """Proposals that do not change with the RPN: each gt box shifted by 4 px, plus a grid of 32 px boxes
    (with the RPN's own, the share of positives grows as it learns, and loss_bbox with it)."""
    grid = torch.tensor([[x, y, x + 32.0, y + 32.0] for x in range(0, 96, 24) for y in range(0, 96, 24)])
    return [Instances(bboxes=torch.cat([g.bboxes + 4.0, grid])) for g in gt_instances]


def test_the_conv_branch_learns_to_regress_fixed_proposals():
    model = shapes_model()
    model.train()
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(15):
        torch.manual_seed(1)  # the same sampled RoIs every step
        feats = model.extract_feat(batch["imgs"])
        losses = model.roi_head.loss(feats, fixed_proposals(batch["gt_instances"]), batch["gt_instances"],
                                     batch["img_metas"])  # fmt: skip
        optimizer.zero_grad()
        (losses["loss_cls"] + losses["loss_bbox"]).backward()
        optimizer.step()
        history.append(float(losses["loss_bbox"].detach()))
    assert sum(history[-3:]) / 3 < 0.7 * history[0], history


def test_inference_gives_detections_in_original_coordinates():
    model = shapes_model(score_thr=0.0, max_per_img=9)
    model.eval()
    batch = fake_batch(num_images=2, img_size=[(96, 96), (80, 64)], num_classes=3, scale_factor=2.0)
    with torch.no_grad():
        results = model(batch["imgs"], batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=9, num_classes=3)
    with torch.no_grad():
        cls_score, bbox_pred = model.roi_head.bbox_head(torch.randn(5, 32, 7, 7), torch.randn(5, 32, 7, 7))
    assert tuple(cls_score.shape) == (5, 4) and tuple(bbox_pred.shape) == (5, 12)


def test_bad_arguments_are_refused():
    table = model_table("dh_faster_rcnn_shapes")["roi_head"]["bbox_head"]
    with pytest.raises(ValueError, match="num_convs >= 1"):
        detcore.build("roi_head", {**table, "num_convs": 0})
    with pytest.raises(ValueError, match="with_avg_pool"):
        detcore.build("roi_head", {**table, "with_avg_pool": False})
    head = detcore.build("roi_head", table)
    with pytest.raises(ValueError, match="DoubleHeadRoIHead"):
        head(torch.zeros(1, 32, 7, 7))
