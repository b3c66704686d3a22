"""Patching one item of a base config's array: tables keyed by item indices in ``extends`` merges, and
index paths in ``--set`` (how one stage of a cascade is overridden without restating the others)."""

from __future__ import annotations

import pytest

from detcore.config import load_config
from detcore.errors import ConfigError

BASE = """
[model]
type = "M"

[[model.stages]]
iou = 0.5
sampler = { num = 512, add_gt = true }

[[model.stages]]
iou = 0.6
sampler = { num = 512, add_gt = true }

[[model.stages]]
iou = 0.7
sampler = { num = 512, add_gt = true }

[model.scales]
values = [1, 2, 3]
"""


@pytest.fixture()
def base(tmp_path):
    (tmp_path / "base.toml").write_text(BASE)
    return tmp_path


def _child(folder, text: str, name: str = "child.toml"):
    path = folder / name
    path.write_text('extends = ["base.toml"]\n' + text)
    return path


def test_an_index_table_merges_into_that_item_only(base):
    path = _child(base, "[model.stages.2]\niou = 0.75\n\n[model.stages.1.sampler]\nnum = 128\n")
    cfg = load_config(path)
    stages = cfg["model"]["stages"]
    assert [s["iou"] for s in stages] == [0.5, 0.6, 0.75]
    assert [s["sampler"] for s in stages] == [
        {"num": 512, "add_gt": True}, {"num": 128, "add_gt": True}, {"num": 512, "add_gt": True},
    ]  # fmt: skip
    # each key names the file that set it: the patch for the patched keys, the base for the others
    assert cfg.source_of("model.stages.2.iou") == str(path)
    assert cfg.source_of("model.stages.1.sampler.num") == str(path)
    assert cfg.source_of("model.stages.1.sampler.add_gt") == str(base / "base.toml")
    assert cfg.source_of("model.stages.0.iou") == str(base / "base.toml")


def test_inline_index_tables_negative_indices_and_replacing_items(base):
    text = (
        "[model]\n"
        "stages = { -1 = { iou = 0.8 }, 0 = { _replace = true, iou = 0.4 } }\n"
        "scales = { values = { 1 = 20 } }\n"
    )
    cfg = load_config(_child(base, text))
    stages = cfg["model"]["stages"]
    assert stages[0] == {"iou": 0.4}  # replaced: its sampler is gone
    assert stages[1]["iou"] == 0.6 and stages[2] == {"iou": 0.8, "sampler": {"num": 512, "add_gt": True}}
    assert cfg["model"]["scales"]["values"] == [1, 20, 3]  # a scalar item is replaced
    assert cfg.source_of("model.stages.2.iou").endswith("child.toml")


def test_patches_chain_through_several_extends(base):
    _child(base, "[model.stages.0]\niou = 0.45\n", name="mid.toml")
    top = base / "top.toml"
    top.write_text('extends = ["mid.toml"]\n[model.stages.2]\niou = 0.72\n')
    stages = load_config(top)["model"]["stages"]
    assert [s["iou"] for s in stages] == [0.45, 0.6, 0.72]


def test_an_array_is_still_replaced_by_an_array_or_a_table_without_indices(base):
    cfg = load_config(_child(base, "[model]\nstages = [{ iou = 0.9 }]\n"))
    assert cfg["model"]["stages"] == [{"iou": 0.9}]
    cfg = load_config(_child(base, "[model.stages]\niou = 0.9\n"))
    assert cfg["model"]["stages"] == {"iou": 0.9}


def test_an_index_outside_the_array_names_the_file_and_the_key_path(base):
    path = _child(base, "[model.stages.3]\niou = 0.8\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: model.stages.3: index 3 is outside the array of 3 items")
    assert "(indices 0 to 2)" in msg
    with pytest.raises(ConfigError, match=r"model.stages.-4: index -4 is outside the array of 3 items"):
        load_config(_child(base, "[model.stages.-4]\niou = 0.8\n"))


def test_a_table_mixing_indices_and_keys_over_an_array_is_an_error(base):
    path = _child(base, "[model.stages]\n1 = { iou = 0.8 }\niou = 0.9\n")
    expected = r"child.toml: model.stages: patches items \['1'\] of an array but also sets \['iou'\]"
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_set_indexes_arrays_of_tables(base):
    cfg = load_config(base / "base.toml", ["model.stages.2.sampler.num=64", "model.stages.-1.iou=0.75"])
    assert [s["sampler"]["num"] for s in cfg["model"]["stages"]] == [512, 512, 64]
    assert cfg["model"]["stages"][2]["iou"] == 0.75
    assert cfg.source_of("model.stages.2.sampler.num") == "--set model.stages.2.sampler.num=64"
    with pytest.raises(ConfigError, match="'model.stages.5' indexes an array of 3 items with '5'"):
        load_config(base / "base.toml", ["model.stages.5.iou=0.75"])
