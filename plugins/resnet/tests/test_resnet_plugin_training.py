"""GCNet and generalized attention detectors train: the loss names, and a few iterations lowering the
losses on a painted batch (with the attention blocks' gamma leaving 0)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import detcore
from detcore.models.layers import ContextBlock, GeneralizedAttention
from detcore.testing import check_loss_falls, fake_batch, load_validated_config

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_fpn", reason="det-plugin-fpn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def config(folder: str, name: str) -> dict:
    return load_validated_config(CONFIGS / folder / f"{name}.toml").to_dict()


def _blocks(model: torch.nn.Module, kind: type) -> list[torch.nn.Module]:
    return [m for m in model.backbone.modules() if isinstance(m, kind)]


def _shapes_model(table: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_gcb_mask_rcnn_shapes_trains():
    model = _shapes_model(config("gcnet", "mask_rcnn_r50_fpn_gcb_shapes")["model"])
    assert len(_blocks(model, ContextBlock)) == 13
    batch = fake_batch(num_images=2, img_size=(64, 64), num_classes=3, boxes_per_image=2, with_masks=True)
    model.train()
    names = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc", "loss_mask"}
    assert names <= set(model(**batch))
    log = check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                           keys=("loss", "loss_rpn_cls", "loss_mask"), ratio=0.8)  # fmt: skip
    assert log


def test_attention_faster_rcnn_trains():
    """faster_rcnn_shapes on a ResNet-50 at an eighth of the width with '1111' attention in C4-C5."""
    table = copy.deepcopy(config("faster_rcnn", "faster_rcnn_shapes")["model"])
    attention = config("empirical_attention", "faster_rcnn_r50_fpn_attention_1111_1x_coco")
    plugins = attention["model"]["backbone"]["plugins"]
    plugins[0]["cfg"]["num_heads"] = 2
    table["backbone"].update(depth=50, base_channels=8, plugins=plugins)
    table["neck"]["in_channels"] = [32, 64, 128, 256]
    model = _shapes_model(table)
    assert len(_blocks(model, GeneralizedAttention)) == 9
    batch = fake_batch(num_images=2, img_size=(64, 64), num_classes=3, boxes_per_image=2)
    log = check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                           keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip
    assert any(b.gamma.abs().item() > 0 for b in _blocks(model, GeneralizedAttention)), (
        "the attention blocks' gamma never left 0: the blocks took no part in training"
    )
    assert log
