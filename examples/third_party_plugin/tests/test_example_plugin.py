"""The example plugin, used as any installed plugin is: through its config and detcore's registry."""

from pathlib import Path

import pytest
import torch

import detcore
from detcore.config import load_config, validate_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "example.toml"

pytest.importorskip("det_plugin_example", reason="det-plugin-example is not installed")


def test_components_build_from_the_config():
    cfg = load_config(CONFIG)
    validate_config(cfg)
    backbone = detcore.build("backbone", cfg["model"]["backbone"])
    outs = backbone(torch.zeros(2, 3, 64, 64))
    # stages at strides 2, 4, 8 with 8, 16, 32 channels; out_indices keeps stages 1 and 2
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 16), (2, 32, 8, 8)]
    loss = detcore.build("loss", cfg["model"]["loss"])
    pred, target = torch.tensor([0.0, 3.0]), torch.tensor([0.0, 0.0])
    # sqrt(0 + 1e-4) - 0.01 = 0 and sqrt(9 + 1e-4) - 0.01 -> mean
    expected = (0.0 + (9.0001**0.5 - 0.01)) / 2
    assert loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    hook = detcore.build("run_hook", cfg["custom_hooks"][0])
    assert hook.filename == "history.json"


def test_registry_names_the_plugin_and_its_distribution():
    entry = detcore.get_registry().get("loss", "example:CharbonnierLoss")
    assert (entry.plugin, entry.distribution) == ("example", "det-plugin-example")
