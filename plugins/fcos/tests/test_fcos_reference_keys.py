"""The standard FCOS configs build models whose state dicts are the reference checkpoints' (names,
shapes, order, parameter count), and a reference-format checkpoint loads through init_detector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config
from detcore.testing import check_reference_checkpoint_loads, reference_keys_or_skip

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
    name = CONFIGS[0]
    check_reference_checkpoint_loads(ROOT / "configs" / "fcos" / f"{name}.toml", name, tmp_path)
