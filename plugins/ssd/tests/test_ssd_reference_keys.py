"""SSD300/SSD512: the state-dict layout and parameter count of the reference checkpoints, and loading a
reference-format checkpoint through ``detcore.api.init_detector``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import Config
from detcore.testing import load_validated_config, reference_keys_or_skip, write_reference_checkpoint

pytest.importorskip("det_plugin_ssd", reason="det-plugin-ssd is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "ssd"
STANDARD = ["ssd300_coco", "ssd512_coco"]


def load(name: str) -> Config:
    return load_validated_config(CONFIGS / f"{name}.toml")


@pytest.mark.parametrize("name", STANDARD)
def test_state_dict_matches_reference_checkpoint(name: str) -> None:
    count, entries = reference_keys_or_skip(name)
    with torch.device("meta"):
        model = detcore.build("detector", load(name)["model"])
    state = model.state_dict()
    assert list(state) == [k for k, _ in entries]  # names and order
    assert {k: tuple(v.shape) for k, v in state.items()} == dict(entries)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize(
    "name, mins, maxs, per_loc",
    [
        # the reference SSD300/SSD512 anchor sizes (from basesize_ratio_range and input_size)
        ("ssd300_coco", [21, 45, 99, 153, 207, 261], [45, 99, 153, 207, 261, 315], [4, 6, 6, 6, 4, 4]),
        ("ssd512_coco", [20, 51, 133, 215, 296, 378, 460], [51, 133, 215, 296, 378, 460, 542],
         [4, 6, 6, 6, 6, 4, 4]),
    ],
)
def test_anchor_sizes_of_the_standard_configs(name: str, mins: list, maxs: list, per_loc: list) -> None:
    head_cfg = dict(load(name)["model"]["bbox_head"])
    head = detcore.build("dense_head", head_cfg)
    gen = head.prior_generator
    assert gen.min_sizes == mins and gen.max_sizes == maxs
    assert head.num_base_priors == per_loc
    # level 0: the first two anchors are squares of min_size and sqrt(min * max) centred at stride / 2
    a = gen.base_anchors[0]
    r = mins[0] / 2
    assert torch.allclose(a[0], torch.tensor([4 - r, 4 - r, 4 + r, 4 + r]))
    side = (mins[0] * maxs[0]) ** 0.5
    assert torch.allclose(a[1, 2] - a[1, 0], torch.tensor(side), atol=1e-4)


def test_reference_format_checkpoint_loads_through_init_detector(tmp_path: Path) -> None:
    from detcore.api import init_detector

    ckpt = tmp_path / "ssd300_coco_ref.pth"
    state = write_reference_checkpoint("ssd300_coco", ckpt)
    model = init_detector(CONFIGS / "ssd300_coco.toml", ckpt)
    assert model.load_report.clean, model.load_report.format()
    assert not model.training
    loaded = model.state_dict()
    for key in ("backbone.features.33.weight", "neck.l2_norm.weight", "neck.extra_layers.3.1.conv.bias",
                "bbox_head.cls_convs.5.0.weight", "bbox_head.reg_convs.1.0.bias"):
        assert torch.equal(loaded[key], state[key]), key
