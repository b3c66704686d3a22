"""``detcore flops``: per-module FLOPs against hand-computed convolution and linear costs."""

from pathlib import Path

import pytest
from torch import nn

from detcore.tools.flops import detector_flops, module_flops

REPO = Path(__file__).resolve().parents[2]


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # per output pixel: 8 x 3 x 3 x 3 multiply-adds
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_conv_and_linear_flops_are_two_per_multiply_add():
    import torch

    model = TwoLayer()
    report = module_flops(model, lambda: model(torch.zeros(2, 3, 10, 6)))
    conv = 2 * (2 * 8 * 10 * 6) * (3 * 3 * 3)  # batch 2, 8 channels, 10x6 pixels, 27 MACs each
    linear = 2 * 2 * 8 * 5
    rows = {row.name: row for row in report.rows}
    assert rows["conv"].flops == conv
    assert rows["head"].flops == rows["head.1"].flops == linear
    assert "head.0" not in rows  # the ReLU has neither parameters nor counted FLOPs
    assert report.flops == rows[""].flops == conv + linear
    assert report.macs == (conv + linear) // 2
    assert rows["conv"].params == 8 * 27 + 8 and report.params == 8 * 27 + 8 + 8 * 5 + 5


def test_flops_command_on_a_shapes_config(capsys):
    from detcore.cli.main import main

    config = REPO / "configs" / "demo" / "demo_shapes.toml"
    assert main(["flops", str(config), "--shape", "64", "96", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "Input shape: (3, 64, 96)" in out and "GMACs" in out and "Caveats:" in out

    from detcore.api import init_detector

    report = detector_flops(init_detector(config), (64, 96), depth=1)
    top = [row for row in report.rows if row.name]
    # a single-stage detector is backbone -> neck -> head: its parts add up to the whole
    assert sum(row.flops for row in top) == report.flops > 0
    assert sum(row.params for row in top) == report.params
    bigger = detector_flops(init_detector(config), (128, 192), depth=1)
    assert bigger.flops == pytest.approx(4 * report.flops, rel=0.05)  # convolutions scale with area


def test_flops_command_refuses_a_bad_shape(capsys):
    from detcore.cli.main import main

    assert main(["flops", str(REPO / "configs/demo/demo_shapes.toml"), "--shape", "1", "2", "3"]) == 1
    assert "--shape" in capsys.readouterr().err
