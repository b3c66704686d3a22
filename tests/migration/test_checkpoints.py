"""`detcore checkpoint upgrade` / `publish` and the loaders' reports: old-layout checkpoints made here from
detcore models by the inverse of each documented change, upgraded, and loaded with every key matched."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from detcore.api import init_detector
from detcore.cli.main import main
from detcore.config import load_config
from detcore.migration.checkpoint_upgrade import CheckpointFormatError, read_checkpoint, upgrade_state_dict

REPO = Path(__file__).resolve().parents[2]
SSD = str(REPO / "configs/ssd/ssd_shapes.toml")  # 3 classes: 4 softmax channels per anchor
MASK_RCNN = str(REPO / "configs/mask_rcnn/mask_rcnn_shapes.toml")


def model_state(config: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = init_detector(config)
    # distinct values everywhere, so that a wrong permutation cannot go unnoticed
    return {
        k: torch.randn(v.shape) if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()
    }


def background_first(value: torch.Tensor, k: int) -> torch.Tensor:
    """1.x order: within every group of k class channels, the last (background) comes first."""
    order = []
    for a in range(value.shape[0] // k):
        order += [a * k + k - 1] + [a * k + c for c in range(k - 1)]
    return value[order]


def ssd_1x(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 2.x SSD state dict written the 1.x way (extras in the backbone, bare head convs, bg first)."""
    old = {}
    for key, value in state.items():
        m = re.match(r"neck\.extra_layers\.(\d+)\.(\d+)\.conv\.(weight|bias)$", key)
        if m:
            key = f"backbone.extra.{2 * int(m.group(1)) + int(m.group(2))}.{m.group(3)}"
        elif key == "neck.l2_norm.weight":
            key = "backbone.l2_norm.weight"
        elif re.match(r"bbox_head\.(cls|reg)_convs\.\d+\.0\.", key):
            key = key.replace(".0.weight", ".weight").replace(".0.bias", ".bias")
            if "cls_convs" in key:
                value = background_first(value, 4)
        old[key] = value
    return old


def test_1x_ssd_checkpoint_upgrades_and_loads_every_key(tmp_path, capsys):
    state = model_state(SSD)
    old = ssd_1x(state)
    assert "backbone.extra.0.weight" in old and "bbox_head.cls_convs.0.weight" in old
    src, dst = tmp_path / "ssd_1x.pth", tmp_path / "ssd_upgraded.pth"
    # a reference-era file: numpy values in meta, optimizer state
    torch.save(
        {
            "state_dict": old,
            "meta": {
                "mmdet_version": "1.0rc0",
                "epoch": np.int64(24),
                "CLASSES": ("circle", "square", "triangle"),
            },
            "optimizer": {"state": {}, "param_groups": []},
        },
        src,
    )
    # loading it as it is: every unexpected key named and the upgrade suggested
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match=r"detcore checkpoint upgrade .*ssd_1x\.pth OUT\.pth"):
            init_detector(SSD, src)  # numpy in meta: refused by the weights-only loader, with the way out
    assert not caught
    assert main(["checkpoint", "upgrade", str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert (
        "pre-2.14 SSD layout" in printed
        and "backbone.extra.0.weight -> neck.extra_layers.0.0.conv.weight" in printed
    )
    assert "bbox_head.cls_convs.0.0.weight: background class moved" in printed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = init_detector(SSD, dst)
    assert model.load_report.clean and model.CLASSES == ("circle", "square", "triangle")
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert read_checkpoint(dst)["meta"]["epoch"] == 24


def test_old_layout_keys_are_named_with_the_upgrade_hint(tmp_path):
    old = ssd_1x(model_state(SSD))
    old["bbox_head.cls_convs.0.weight"] = old["bbox_head.cls_convs.0.weight"][:8]  # and a shape mismatch
    src = tmp_path / "old.pth"
    torch.save({"state_dict": old}, src)
    with pytest.warns(UserWarning) as record:
        init_detector(SSD, src)
    text = str(record[0].message)
    assert "missing in the checkpoint" in text and "neck.extra_layers.0.0.conv.weight" in text
    assert "unexpected in the checkpoint" in text and "backbone.l2_norm.weight" in text
    assert "pre-2.14 SSD layout: convert it with `detcore checkpoint upgrade IN OUT`" in text
    model = init_detector(SSD)
    good = dict(model.state_dict())
    good["bbox_head.cls_convs.0.0.weight"] = good["bbox_head.cls_convs.0.0.weight"][:8]
    torch.save({"state_dict": good}, src)
    with pytest.warns(
        UserWarning,
        match=r"bbox_head\.cls_convs\.0\.0\.weight: checkpoint \(8, 64, 3, 3\) vs "
        r"model \(16, 64, 3, 3\)",
    ):
        init_detector(SSD, src)


def test_1x_two_stage_checkpoint(tmp_path):
    state = model_state(MASK_RCNN)
    old = {}
    for key, value in state.items():
        key = key[len("roi_head.") :] if key.startswith("roi_head.") else key
        if key.endswith("fc_cls.weight") or key.endswith("fc_cls.bias"):
            value = background_first(value, 4)
        elif key.endswith("fc_reg.weight") or key.endswith("fc_reg.bias"):
            value = torch.cat([torch.full_like(value[:4], 7.0), value])  # 1.x: 4 background rows first
        elif key.endswith("conv_logits.weight") or key.endswith("conv_logits.bias"):
            value = torch.cat([torch.full_like(value[:1], 7.0), value])
        old[key] = value
    assert old["bbox_head.fc_reg.weight"].shape[0] == 16 and old["mask_head.conv_logits.bias"].shape == (4,)
    new, report = upgrade_state_dict(old)
    assert report.layout == "1.x two-stage"
    assert "bbox_head.fc_cls.weight -> roi_head.bbox_head.fc_cls.weight" in report.changes
    assert set(new) == set(state)
    for key, value in state.items():
        assert torch.equal(new[key], value), key
    # a 2.x file is left as it is
    same, report = upgrade_state_dict(state)
    assert report.layout == "current" and not report.changes and all(same[k] is state[k] for k in state)


def test_old_retinanet_conv_names():
    old = {
        "bbox_head.cls_convs.0.weight": torch.ones(2, 2, 3, 3),
        "bbox_head.reg_convs.3.bias": torch.ones(2),
        "bbox_head.retina_cls.weight": torch.ones(27, 2, 3, 3),
        "bbox_head.retina_cls.bias": torch.ones(27),
    }
    new, report = upgrade_state_dict(old, shift_background=True)
    assert report.layout == "0.5 RetinaNet"
    assert list(new) == [
        "bbox_head.cls_convs.0.conv.weight",
        "bbox_head.reg_convs.3.conv.bias",
        "bbox_head.retina_cls.weight",
        "bbox_head.retina_cls.bias",
    ]
    assert torch.equal(
        new["bbox_head.retina_cls.bias"], old["bbox_head.retina_cls.bias"]
    )  # sigmoid: no shift


def test_publish_strips_training_state_and_names_the_hash(tmp_path, capsys):
    model = init_detector(SSD)
    state = model.state_dict()
    src = tmp_path / "epoch_12.pth"
    torch.save(
        {
            "state_dict": {**state, "ema_backbone_features_0_weight": torch.ones(1)},
            "ema_state_dict": dict(state),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "scheduler": {},
            "rng": [],
            "meta": {"epoch": 12, "classes": ["a", "b", "c"], "seed": 0},
        },
        src,
    )
    assert main(["checkpoint", "publish", str(src), str(tmp_path / "ssd_shapes.pth")]) == 0
    final = Path(capsys.readouterr().out.strip())
    assert re.fullmatch(r"ssd_shapes-[0-9a-f]{8}\.pth", final.name) and final.is_file()
    assert hashlib.sha256(final.read_bytes()).hexdigest()[:8] == final.name[11:19]
    assert not (tmp_path / "ssd_shapes.pth").exists()
    ckpt = torch.load(final, weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"} and ckpt["meta"] == {"epoch": 12, "classes": ["a", "b", "c"]}
    assert set(ckpt["state_dict"]) == set(state) and all(
        v.device.type == "cpu" for v in ckpt["state_dict"].values()
    )
    loaded = init_detector(SSD, final)
    assert loaded.load_report.clean and loaded.CLASSES == ("a", "b", "c")


class Opaque:
    """Stands for any pickled object a checkpoint may carry."""


def test_pickled_objects_are_refused_with_the_conversion(tmp_path):
    src = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": {"obj": Opaque()}}, src)
    with pytest.raises(CheckpointFormatError, match=r"it pickles .*Opaque.*never unpickles objects"):
        read_checkpoint(src)
    with pytest.raises(RuntimeError, match=r"weights_only=False\); torch\.save\(\{'state_dict'"):
        init_detector(SSD, src)
    assert main(["checkpoint", "upgrade", str(src), str(tmp_path / "out.pth")]) == 1
    assert load_config(SSD)  # the config itself is fine


def test_pretrained_loader_refuses_pickles_too(tmp_path):
    from detcore.models.checkpoint_io import state_dict_from

    src = tmp_path / "backbone.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": Opaque()}, src)
    with pytest.raises(RuntimeError, match=r"cannot be loaded weights-only \(it pickles .*Opaque"):
        state_dict_from(src)
    torch.save({"state_dict": {"module.w": torch.ones(1)}}, src)
    assert list(state_dict_from(src)) == ["w"]


def test_upgrade_hint_from_renamed_keys_the_model_misses():
    from detcore.migration.checkpoint_upgrade import old_layout_hint

    # 0.5 RetinaNet: only the bare conv names are unexpected; with '.conv.' they are what the model misses
    hint = old_layout_hint(["bbox_head.cls_convs.0.weight"], ["bbox_head.cls_convs.0.conv.weight"])
    assert hint is not None and "0.5 RetinaNet layout" in hint and "detcore checkpoint upgrade" in hint
    # 1.x two-stage: the top-level heads are unexpected, their roi_head. names missing
    hint = old_layout_hint(["bbox_head.fc_cls.weight"], ["roi_head.bbox_head.fc_cls.weight"])
    assert hint is not None and "1.x two-stage layout" in hint
    assert old_layout_hint(["extra.weight"], ["other.weight"]) is None
