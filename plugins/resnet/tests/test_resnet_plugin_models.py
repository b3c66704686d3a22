"""GCNet, generalized attention and from-scratch detectors: the reference layouts and parameter counts,
reference checkpoints loading, the variants' blocks and the scratch recipe (training:
test_resnet_plugin_training.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.models.layers import ContextBlock, GeneralizedAttention
from detcore.testing import (
    check_reference_checkpoint_loads,
    check_reference_layout,
    load_validated_config,
)

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_fpn", reason="det-plugin-fpn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
STANDARD = {
    "mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco": "gcnet",
    "faster_rcnn_r50_fpn_attention_1111_1x_coco": "empirical_attention",
    "faster_rcnn_r50_fpn_gn-all_scratch_6x_coco": "scratch",
}


def config(name: str, folder: str | None = None) -> dict:
    return load_validated_config(CONFIGS / (folder or STANDARD[name]) / f"{name}.toml").to_dict()


def meta_model(table: dict) -> torch.nn.Module:
    with torch.device("meta"):
        return detcore.build("detector", table)


@pytest.mark.parametrize("name", STANDARD)
def test_layout_and_parameter_count_match_the_reference(name):
    check_reference_layout(config(name)["model"], name)


@pytest.mark.parametrize("name", STANDARD)
def test_reference_checkpoint_loads(name, tmp_path):
    check_reference_checkpoint_loads(CONFIGS / STANDARD[name] / f"{name}.toml", name, tmp_path)


def _blocks(model: torch.nn.Module, kind: type) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in model.backbone.named_modules() if isinstance(m, kind)}


def test_gcb_c3_c5_has_one_context_block_per_bottleneck_of_c3_to_c5():
    model = meta_model(config("mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco")["model"])
    blocks = _blocks(model, ContextBlock)
    assert len(blocks) == 4 + 6 + 3 and not any(n.startswith("layer1") for n in blocks)
    assert blocks["layer4.2.context_block"].planes == 2048 // 16
    r4 = meta_model(config("mask_rcnn_r50_fpn_r4_gcb_c3-c5_1x_coco", "gcnet")["model"])
    assert _blocks(r4, ContextBlock)["layer2.0.context_block"].planes == 512 // 4
    sync = config("mask_rcnn_r50_fpn_syncbn-backbone_r16_gcb_c3-c5_1x_coco", "gcnet")["model"]["backbone"]
    assert sync["norm_cfg"]["type"] == "SyncBN" and sync["norm_eval"] is False and len(sync["plugins"]) == 1


@pytest.mark.parametrize(
    ("name", "bits", "dcn"),
    [("faster_rcnn_r50_fpn_attention_1111_1x_coco", "1111", False),
     ("faster_rcnn_r50_fpn_attention_0010_1x_coco", "0010", False),
     ("faster_rcnn_r50_fpn_attention_1111_dcn_1x_coco", "1111", True),
     ("faster_rcnn_r50_fpn_attention_0010_dcn_1x_coco", "0010", True)],
)  # fmt: skip
def test_attention_variants_put_their_blocks_in_c4_c5(name, bits, dcn):
    model = meta_model(config(name, "empirical_attention")["model"])
    blocks = _blocks(model, GeneralizedAttention)
    assert len(blocks) == 6 + 3 and all(n.split(".")[0] in ("layer3", "layer4") for n in blocks)
    terms = tuple(c == "1" for c in bits)
    assert all(b.attention_type == terms and b.kv_stride == 2 for b in blocks.values())
    assert blocks["layer4.0.gen_attention_block"].in_channels == 512  # width after conv2
    assert hasattr(model.backbone.layer2[1].conv2, "conv_offset") == dcn


def test_scratch_recipe_and_initialisation():
    cfg = config("faster_rcnn_r50_fpn_gn-all_scratch_6x_coco")
    backbone = cfg["model"]["backbone"]
    assert "init_cfg" not in backbone and "pretrained" not in backbone  # no ImageNet weights
    assert backbone["frozen_stages"] == -1 and backbone["zero_init_residual"] is False
    assert cfg["optimizer"]["paramwise_cfg"] == {"norm_decay_mult": 0.0}
    assert "grad_clip" not in cfg.get("optimizer_config", {})
    assert cfg["lr_config"]["step"] == [65, 71] and cfg["lr_config"]["warmup_ratio"] == 0.1
    assert cfg["runner"]["max_epochs"] == 73
    model = detcore.build("detector", cfg["model"]).backbone
    model.init_weights()  # nothing to download; every stage trains, last norms stay at 1
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(model.layer1[0].gn3.weight, torch.ones(256))
    assert type(model.layer3[0].gn1).__name__ == "GroupNorm" and model.layer3[0].gn1.num_groups == 32
