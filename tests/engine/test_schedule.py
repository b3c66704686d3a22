"""LR schedules and warm-up give the hand-computed values."""

from __future__ import annotations

import math

import pytest

from detcore.engine import Hook
from detcore.engine.schedule import ParamSchedule, warmup_factor


def lr_at(cfg, epoch, it, max_epochs=12, max_iters=1200, by_epoch=True, base=0.1):
    return ParamSchedule(cfg, by_epoch).value(base, epoch, it, max_epochs, max_iters, 100)


def test_step_with_linear_warmup():
    cfg = {"policy": "step", "step": [8, 11], "warmup": "linear", "warmup_iters": 5, "warmup_ratio": 0.1}
    assert lr_at(cfg, 0, 0) == pytest.approx(0.1 * 0.1)
    assert lr_at(cfg, 0, 2) == pytest.approx(0.1 * (1 - 0.6 * 0.9))
    assert lr_at(cfg, 0, 5) == pytest.approx(0.1)
    assert lr_at(cfg, 7, 700) == pytest.approx(0.1)
    assert lr_at(cfg, 8, 800) == pytest.approx(0.01)
    assert lr_at(cfg, 11, 1100) == pytest.approx(0.001)


def test_step_every_n_and_multistep():
    assert lr_at({"policy": "step", "step": 3, "gamma": 0.5}, 7, 0) == pytest.approx(0.1 * 0.25)
    assert lr_at({"policy": "multistep", "milestones": [2, 4]}, 4, 0) == pytest.approx(0.001)


def test_cosine_and_poly_by_iteration():
    cos = {"policy": "cosine", "by_epoch": False, "min_lr": 0.0}
    assert lr_at(cos, 0, 600) == pytest.approx(0.05)
    assert lr_at(cos, 0, 300) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at({"policy": "cosine", "by_epoch": False, "min_lr_ratio": 0.1}, 0, 1200) == pytest.approx(0.01)
    poly = {"policy": "poly", "by_epoch": False, "power": 2.0, "min_lr": 0.001}
    assert lr_at(poly, 0, 600) == pytest.approx(0.099 * 0.25 + 0.001)


def test_warmup_kinds():
    assert warmup_factor("constant", 3, 10, 1 / 3) == pytest.approx(1 / 3)
    assert warmup_factor("exp", 5, 10, 0.01) == pytest.approx(0.1)
    assert warmup_factor("linear", 10, 10, 0.01) == 1.0
    with pytest.raises(Exception, match="warmup"):
        ParamSchedule({"warmup": "quadratic", "warmup_iters": 3}, True)


class LrRecorder(Hook):
    def __init__(self):
        super().__init__(20)  # after the schedule (10), before the step (30)
        self.lrs = []

    def before_train_iter(self, runner):
        self.lrs.append([g["lr"] for g in runner.optimizer.param_groups])


def test_runner_applies_schedule_to_every_group(make_runner):
    runner = make_runner(
        lr_config={"policy": "step", "step": [1], "warmup": "linear", "warmup_iters": 3, "warmup_ratio": 0.1},
        optimizer={"paramwise_cfg": {"custom_keys": {"head": {"lr_mult": 0.5}}}},
        evaluation={"interval": 5},
    )
    rec = LrRecorder()
    runner.register_hook(rec)
    runner.train()
    base = 0.05
    expected = [base * 0.1, base * (1 - 2 / 3 * 0.9), base * (1 - 1 / 3 * 0.9), base] + [base * 0.1] * 4
    first = [lrs[0] for lrs in rec.lrs]
    assert first == pytest.approx(expected)
    mults = [g["lr_mult"] for g in runner.optimizer.param_groups]
    for lrs in rec.lrs:
        assert lrs[mults.index(0.5)] == pytest.approx(lrs[mults.index(1.0)] * 0.5)
