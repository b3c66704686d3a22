"""Faster R-CNN HRNetV2p: the reference layout and parameter count, a reference-format checkpoint
loading, the W18/W40 variants, and the shapes model's losses falling on a painted batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_detections,
    check_loss_falls,
    check_reference_checkpoint_loads,
    check_reference_layout,
    fake_batch,
    load_validated_config,
    state_dict_layout,
)

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "hrnet"
W32 = "faster_rcnn_hrnetv2p_w32_1x_coco"


def model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


def test_w32_layout_and_parameter_count_match_the_reference():
    assert check_reference_layout(model_table(W32), W32) == 47_279_712


def test_w32_reference_checkpoint_loads(tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{W32}.toml", W32, tmp_path)


@pytest.fixture(scope="module")
def w32_layout() -> dict:
    with torch.device("meta"):
        return dict(state_dict_layout(detcore.build("detector", model_table(W32))))


@pytest.mark.parametrize(("width", "count"), [(18, 27_482_676), (40, 63_526_112)])
def test_w18_w40_are_the_w32_layout_at_other_widths(width, count, w32_layout):
    """Same keys as W32; every branch-c tensor scaled to the width: branch i has width * 2**i channels,
    the HRFPN reduction conv takes 15 * width."""
    table = model_table(f"faster_rcnn_hrnetv2p_w{width}_1x_coco")
    with torch.device("meta"):
        model = detcore.build("detector", table)
    layout, reference = dict(state_dict_layout(model)), w32_layout
    assert list(layout) == list(reference)
    assert model.backbone.out_channels == tuple(width * 2**i for i in range(4))
    assert layout["neck.reduction_conv.conv.weight"] == (256, 15 * width, 1, 1)
    assert layout["backbone.stage4.0.fuse_layers.3.0.2.0.weight"] == (8 * width, width, 3, 3)
    assert layout["backbone.layer1.0.conv1.weight"] == reference["backbone.layer1.0.conv1.weight"]
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.fixture(scope="module")
def shapes_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", model_table("faster_rcnn_hrnetv2p_shapes"))
    model.init_weights()
    return model


def test_shapes_model_trains(shapes_model):
    assert type(shapes_model.backbone).__name__ == "HRNet" and type(shapes_model.neck).__name__ == "HRFPN"
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    shapes_model.train()
    names = set(shapes_model(**batch))
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= names
    check_loss_falls(shapes_model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip


def test_shapes_model_detects(shapes_model):
    batch = fake_batch(num_images=2, img_size=(96, 128), num_classes=3, boxes_per_image=2)
    shapes_model.eval()
    with torch.no_grad():
        results = shapes_model(imgs=batch["imgs"], img_metas=batch["img_metas"])
    check_detections(results, batch["img_metas"], max_per_img=100, num_classes=3, min_per_img=0)
