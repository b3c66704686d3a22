"""The hook builder: config hook tables -> run hook objects, their arguments and their priorities."""

from __future__ import annotations

import pytest

from detcore.config import Config
from detcore.engine import RunHookManager, build_run_hooks
from detcore.engine.hooks import (
    CheckpointHook,
    EMAHook,
    EvalHook,
    IterTimerHook,
    LoggerHook,
    OptimizerHook,
    ParamSchedulerHook,
)
from detcore.errors import ConfigError


def config(**tables) -> Config:
    data = {
        "data": {"val": {"type": "TinyBoxes"}},
        "evaluator": {"type": "TinyMetric"},
        "optimizer_config": {"grad_clip": {"max_norm": 35, "norm_type": 2}},
        "lr_config": {"policy": "step", "step": [8, 11], "warmup": "linear", "warmup_iters": 5},
        "checkpoint_config": {"interval": 2, "max_keep_ckpts": 3},
        "log_config": {"interval": 7, "hooks": [{"type": "TextLoggerHook"}]},
        "evaluation": {"interval": 3, "save_best": "acc"},
        "custom_hooks": [{"type": "EMAHook", "momentum": 0.001}],
    }
    data.update(tables)
    return Config(data, {}, "hooks.toml")


def test_tables_map_to_hooks_with_their_arguments():
    hooks = build_run_hooks(config(momentum_config={"policy": "step", "step": [3]}), by_epoch=False)
    types = [type(h) for h in hooks]
    assert types == [
        ParamSchedulerHook,
        OptimizerHook,
        IterTimerHook,
        CheckpointHook,
        EvalHook,
        LoggerHook,
        EMAHook,
    ]
    sched, opt, _, ckpt, ev, log, ema = hooks
    assert sched.lr.by_epoch is False and sched.momentum is not None
    assert opt.grad_clip == {"max_norm": 35, "norm_type": 2}
    assert (ckpt.interval, ckpt.max_keep_ckpts, ckpt.save_best) == (
        2,
        3,
        "acc",
    )  # save_best from [evaluation]
    assert (ev.interval, ev.save_best) == (3, "acc")
    assert log.interval == 7  # the reference's list of logger hooks is covered by the LoggerHook
    assert ema.momentum == 0.001


def test_default_priorities_and_call_order():
    hooks = build_run_hooks(config(), by_epoch=True)
    # the documented defaults: VERY_HIGH 10, HIGH 30, NORMAL 50, LOW 70, VERY_LOW 90; EMA 49
    assert [h.priority for h in hooks] == [10, 30, 50, 50, 70, 90, 49]
    order = RunHookManager().set_hooks(hooks)
    # EMA (49) after the optimizer step (30), before the checkpoint (50) that saves its average;
    # the timer and the checkpoint hook tie at 50 and keep the order of their tables
    assert [type(h).__name__ for h in order] == [
        "ParamSchedulerHook",
        "OptimizerHook",
        "EMAHook",
        "IterTimerHook",
        "CheckpointHook",
        "EvalHook",
        "LoggerHook",
    ]


def test_priority_and_type_overrides():
    cfg = config(
        checkpoint_config={"interval": 1, "priority": 5, "save_best": "mIoU"},
        log_config={"priority": "HIGHEST"},
        timer_config={"type": "RecorderHook", "tag": "t"},
        lr_config={"policy": "step", "step": [1], "priority": 20},
    )
    hooks = {type(h).__name__: h for h in build_run_hooks(cfg, by_epoch=True)}
    assert hooks["CheckpointHook"].priority == 5 and hooks["CheckpointHook"].save_best == "mIoU"
    assert hooks["LoggerHook"].priority == 0
    assert hooks["ParamSchedulerHook"].priority == 20
    assert "IterTimerHook" not in hooks and hooks["RecorderHook"].tag == "t"


def test_what_a_run_does_not_get():
    assert not any(
        isinstance(h, (ParamSchedulerHook, OptimizerHook))
        for h in build_run_hooks(config(), by_epoch=True, with_optimizer=False)
    )
    disabled = config(evaluation={"enabled": False, "interval": 1})
    assert not any(isinstance(h, EvalHook) for h in build_run_hooks(disabled, by_epoch=True))
    no_val = config(data={"train": {"type": "TinyBoxes"}})
    assert not any(isinstance(h, EvalHook) for h in build_run_hooks(no_val, by_epoch=True))


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"checkpoint_config": {"intervall": 2}}, r"checkpoint_config: unknown key 'intervall'.*'interval'"),
        ({"checkpoint_config": {"interval": 0}}, r"checkpoint_config.interval must be an int >= 1"),
        ({"log_config": 5}, r"hooks.toml: log_config must be a table"),
        ({"custom_hooks": [{"type": "EMAHook"}, "EMAHook"]}, r"custom_hooks.1 must be a table with a 'type'"),
        ({"custom_hooks": {"type": "EMAHook"}}, r"custom_hooks must be an array of hook tables"),
    ],
)
def test_bad_tables_are_refused_by_name(tables, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        build_run_hooks(config(**tables), by_epoch=True)
