"""Optimizers from config tables and per-parameter options."""

from __future__ import annotations

import pytest
import torch

from detcore.engine import build_optimizer
from detcore.errors import ConfigError


def groups_by_name(optimizer):
    return {name: g for g in optimizer.param_groups for name in g["param_names"]}


def test_paramwise_options_reach_groups(tiny_plugin):
    model = tiny_plugin.TinyDetector()
    model.backbone[0].weight.requires_grad_(False)
    opt = build_optimizer(
        model,
        {
            "type": "SGD",
            "lr": 0.1,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 1e-4,
            "paramwise_cfg": {
                "norm_decay_mult": 0.0,
                "bias_decay_mult": 0.0,
                "custom_keys": {"head": {"lr_mult": 0.1}, "head.b*": {"decay_mult": 0.5}},
            },
        },
    )
    assert isinstance(opt, torch.optim.SGD)
    g = groups_by_name(opt)
    assert "backbone.0.weight" not in g  # frozen: not given to the optimizer
    assert sum(len(x["params"]) for x in opt.param_groups) == 5
    assert g["backbone.0.bias"]["weight_decay"] == 0.0 and g["backbone.0.bias"]["lr"] == pytest.approx(0.1)
    for bn in ("backbone.1.weight", "backbone.1.bias"):
        assert g[bn]["weight_decay"] == 0.0
    assert g["head.weight"]["lr"] == pytest.approx(0.01) and g["head.weight"][
        "weight_decay"
    ] == pytest.approx(1e-4)
    # the longest matching key ("head.b*", a glob) wins over "head"
    assert g["head.bias"]["lr"] == pytest.approx(0.1) and g["head.bias"]["weight_decay"] == pytest.approx(
        5e-5
    )
    assert all(x["momentum"] == 0.9 and x["nesterov"] for x in opt.param_groups)
    params = {id(p) for x in opt.param_groups for p in x["params"]}
    assert id(model.head.weight) in params


@pytest.mark.parametrize("kind, cls", [("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)])
def test_adam_family(tiny_plugin, kind, cls):
    opt = build_optimizer(
        tiny_plugin.TinyDetector(), {"type": kind, "lr": 1e-3, "betas": [0.8, 0.99], "weight_decay": 0.05}
    )
    assert isinstance(opt, cls)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99) and opt.param_groups[0]["weight_decay"] == 0.05


def test_bad_paramwise_key(tiny_plugin):
    with pytest.raises(ConfigError, match="norm_decay_multt"):
        build_optimizer(
            tiny_plugin.TinyDetector(), {"type": "SGD", "lr": 0.1, "paramwise_cfg": {"norm_decay_multt": 0}}
        )


def test_auto_scale_lr(make_runner):
    runner = make_runner(auto_scale_lr={"enable": True, "base_batch_size": 16})
    # batch_size 2 x 1 process vs 16: lr 0.05 * 2 / 16
    assert runner.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 / 8)
