"""Faster R-CNN with deformable / modulated deformable RoI pooling (configs/dcn/*dpool*): the reference
layouts and counts, reference checkpoints loading, the RoI layers built per level, and a few training
iterations lowering the losses with the offset branch learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.ops import DeformRoIPoolPack, ModulatedDeformRoIPoolPack
from detcore.testing import (
    check_loss_falls,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    load_validated_config,
)

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "dcn"
STANDARD = {
    "faster_rcnn_r50_fpn_dpool_1x_coco": DeformRoIPoolPack,
    "faster_rcnn_r50_fpn_mdpool_1x_coco": ModulatedDeformRoIPoolPack,
}


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_layout_and_parameter_count_match_the_reference(name):
    check_reference_layout(model_table(name), name)


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_reference_checkpoint_loads(name, tmp_path):
    model = check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)
    layers = model.roi_head.bbox_roi_extractor.roi_layers
    assert [type(layer) for layer in layers] == [STANDARD[name]] * 4
    assert [layer.spatial_scale for layer in layers] == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert all(layer.gamma == 0.1 and layer.sampling_ratio == 0 for layer in layers)


def test_dpool_faster_rcnn_trains_and_its_offsets_learn():
    torch.manual_seed(0)
    model = detcore.build("detector", model_table("faster_rcnn_r50_fpn_dpool_shapes"))
    model.init_weights()
    layer = model.roi_head.bbox_roi_extractor.roi_layers[0]
    assert isinstance(layer, DeformRoIPoolPack)
    assert torch.count_nonzero(layer.offset_fc[4].weight) == 0  # starts as RoIAlign
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    model.train()
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= set(model(**batch))
    check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip
    # the offsets' last layer got gradients through the deformable pooling and moved off zero
    moved = sum(
        torch.count_nonzero(lay.offset_fc[4].weight) for lay in model.roi_head.bbox_roi_extractor.roi_layers
    )
    assert moved > 0
