"""SSD300/SSD512: the state-dict layout and parameter count of the reference checkpoints, and loading a
reference-format checkpoint through ``detcore.api.init_detector``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import Config
from detcore.testing import check_reference_checkpoint_loads, load_validated_config, reference_keys_or_skip

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
    check_reference_checkpoint_loads(CONFIGS / "ssd300_coco.toml", "ssd300_coco", tmp_path)
