"""The standard FCOS configs build models whose state dicts are the reference checkpoints' (names,
shapes, order, parameter count), and a reference-format checkpoint loads through init_detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config
from detcore.testing import reference_keys_or_skip, write_reference_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = [
    "fcos_r50_caffe_fpn_gn-head_1x_coco",
    "fcos_r50_caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco",
]


def build_meta(name: str) -> torch.nn.Module:
    cfg = load_config(ROOT / "configs" / "fcos" / f"{name}.toml")
    with torch.device("meta"):
        return detcore.build("detector", cfg["model"], where="model")


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_matches_reference(name):
    count, expected = reference_keys_or_skip(name)
    model = build_meta(name)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == count


def test_reference_checkpoint_loads_through_init_detector(tmp_path):
    from detcore.api import init_detector

    name = CONFIGS[0]
    ckpt = tmp_path / "fcos_reference.pth"
    state = write_reference_checkpoint(name, ckpt)
    model = init_detector(str(ROOT / "configs" / "fcos" / f"{name}.toml"), str(ckpt), device="cpu")
    report = model.load_report
    assert report.missing == [] and report.unexpected == [] and report.shape_mismatch == []
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key in ("bbox_head.scales.3.scale", "bbox_head.conv_centerness.weight", "neck.fpn_convs.4.conv.bias",
                "backbone.layer4.2.bn3.running_var"):
        assert torch.equal(loaded[key], state[key])
    assert not model.training
