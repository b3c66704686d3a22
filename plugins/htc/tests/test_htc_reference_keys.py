"""The standard HTC configs against the reference checkpoints' layout: the model built from each config (on
the meta device) has exactly the reference's state-dict entries, in order and shape, and its parameter
count (the figures in the plugin's README); a reference-format checkpoint loads through
``init_detector`` with nothing missing or unexpected."""

from __future__ import annotations

from pathlib import Path

import pytest

from detcore.testing import (
    check_reference_checkpoint_loads,
    check_reference_layout,
    load_validated_config,
)

pytest.importorskip("det_plugin_htc", reason="det-plugin-htc is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "htc"
#: the parameter counts the README states (and the reference's key files)
COUNTS = {
    "htc_without_semantic_r50_fpn_1x_coco": 77456190,
    "htc_r50_fpn_1x_coco": 80258293,
    "htc_x101_64x4d_fpn_dconv_c3-c5_mstrain_400_1400_16x1_20e_coco": 143299601,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_state_dict_and_parameter_count_match_the_reference(name):
    count = check_reference_layout(load_validated_config(CONFIGS / f"{name}.toml").to_dict()["model"], name)
    assert count == COUNTS[name]
    readme = (ROOT / "plugins" / "htc" / "README.md").read_text()
    assert f"{count:,}" in readme, f"the README does not state {name}'s {count:,} parameters"


@pytest.mark.parametrize("name", ["htc_r50_fpn_1x_coco", "htc_without_semantic_r50_fpn_1x_coco"])
def test_a_reference_checkpoint_loads_without_missing_or_unexpected_keys(name, tmp_path):
    check_reference_checkpoint_loads(CONFIGS / f"{name}.toml", name, tmp_path)


def test_the_semantic_config_adds_only_the_semantic_branch_and_its_data():
    with_sem = load_validated_config(CONFIGS / "htc_r50_fpn_1x_coco.toml")
    without = load_validated_config(CONFIGS / "htc_without_semantic_r50_fpn_1x_coco.toml")
    head, ref = dict(with_sem["model"]["roi_head"]), dict(without["model"]["roi_head"])
    assert head.pop("semantic_head")["num_classes"] == 183
    assert head.pop("semantic_roi_extractor")["featmap_strides"] == [8]
    assert head.pop("semantic_fusion") == ["bbox", "mask"]
    assert head == ref
    train = with_sem["data"]["train"]
    assert train["seg_prefix"].endswith("stuffthingmaps/train2017/")
    steps = [s["type"] for s in train["pipeline"]]
    assert steps.index("SegRescale") == steps.index("Pad") + 1
    assert train["pipeline"][steps.index("SegRescale")]["scale_factor"] == 0.125
    x101_name = "htc_x101_64x4d_fpn_dconv_c3-c5_mstrain_400_1400_16x1_20e_coco"
    x101 = load_validated_config(CONFIGS / f"{x101_name}.toml")
    assert x101["model"]["roi_head"] == with_sem["model"]["roi_head"]
    assert x101["runner"]["max_epochs"] == 20 and x101["lr_config"]["step"] == [16, 19]
    resize = next(s for s in x101["data"]["train"]["pipeline"] if s["type"] == "Resize")
    assert resize["img_scale"] == [[1600, 400], [1600, 1400]] and resize["multiscale_mode"] == "range"
