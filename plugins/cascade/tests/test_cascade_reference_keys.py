"""The standard cascade configs against the reference checkpoints' layout: the model built from each
config (on the meta device) has exactly the reference's state-dict entries, in order and shape, and its
parameter count (the figures in the plugin's README); a reference-format checkpoint loads through
``init_detector`` with nothing missing or unexpected. The 20e and X-101 variants build the same heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import (
    check_reference_checkpoint_loads,
    check_reference_layout,
    load_validated_config,
    reference_keys_or_skip,
    state_dict_layout,
)

pytest.importorskip("det_plugin_cascade", reason="det-plugin-cascade is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "cascade_rcnn"
#: the parameter counts the README states (and the reference's key files)
COUNTS = {"cascade_rcnn_r50_fpn_1x_coco": 69394766, "cascade_mask_rcnn_r50_fpn_1x_coco": 77324606}


def _model_table(name: str) -> dict:
    return load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_state_dict_and_parameter_count_match_the_reference(name):
    count = check_reference_layout(_model_table(name), name)
    assert count == COUNTS[name]
    readme = (ROOT / "plugins" / "cascade" / "README.md").read_text()
    assert f"{count:,}" in readme, f"the README does not state {name}'s {count:,} parameters"


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_a_reference_checkpoint_loads_without_missing_or_unexpected_keys(name, tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


@pytest.mark.parametrize(
    "variant, base",
    [
        ("cascade_rcnn_r50_fpn_20e_coco", "cascade_rcnn_r50_fpn_1x_coco"),
        ("cascade_mask_rcnn_r50_fpn_20e_coco", "cascade_mask_rcnn_r50_fpn_1x_coco"),
        ("cascade_rcnn_x101_64x4d_fpn_1x_coco", "cascade_rcnn_r50_fpn_1x_coco"),
        ("cascade_mask_rcnn_x101_64x4d_fpn_1x_coco", "cascade_mask_rcnn_r50_fpn_1x_coco"),
    ],
)
def test_variants_keep_the_heads_and_change_schedule_or_backbone(variant, base):
    cfg = load_validated_config(CONFIGS / f"{variant}.toml")
    ref = load_validated_config(CONFIGS / f"{base}.toml")
    assert cfg["model"]["roi_head"] == ref["model"]["roi_head"]
    assert cfg["model"]["train_cfg"] == ref["model"]["train_cfg"]
    if "20e" in variant:
        assert cfg["lr_config"]["step"] == [16, 19] and cfg["runner"]["max_epochs"] == 20
        assert cfg["model"] == ref["model"]
    else:
        backbone = cfg["model"]["backbone"]
        assert (backbone["type"], backbone["depth"], backbone["groups"], backbone["base_width"]) == (
            "ResNeXt", 101, 64, 4,
        )  # fmt: skip
        assert "resnext101_64x4d" in backbone["init_cfg"]["checkpoint"]
        with torch.device("meta"):
            model = detcore.build("detector", cfg.to_dict()["model"])
        heads = {k: v for k, v in state_dict_layout(model) if k.startswith("roi_head.")}
        ref_heads = {k: v for k, v in reference_keys_or_skip(base).entries if k.startswith("roi_head.")}
        assert heads == ref_heads
