"""Run events fire in the documented order, hooks are called in priority order."""

from __future__ import annotations

import pytest

from detcore.engine import Hook, RunHookManager, get_priority


class Named(Hook):
    def __init__(self, log, tag, priority=None):
        super().__init__(priority)
        self.log, self.tag = log, tag

    def before_train_iter(self, runner):
        self.log.append(self.tag)


def test_manager_calls_in_priority_order_ties_keep_registration_order():
    log: list[str] = []
    hooks = [
        Named(log, "low", 70),
        Named(log, "first40", 40),
        Named(log, "second40", 40),
        Named(log, "top", "HIGHEST"),
    ]
    manager = RunHookManager()
    order = manager.set_hooks(hooks)
    assert [h.tag for h in order] == ["top", "first40", "second40", "low"]
    manager.hook.before_train_iter(runner=None, batch_idx=0, batch=None)
    assert log == ["top", "first40", "second40", "low"]


def test_unmarked_methods_named_as_events_are_implementations():
    manager = RunHookManager()
    hook = Named([], "x")
    manager.set_hooks([hook])
    impls = manager.hook.before_train_iter.get_hookimpls()
    assert [i.plugin for i in impls] == [hook]
    assert manager.hook.after_train_iter.get_hookimpls() == []


def test_priority_names_and_bad_values():
    assert get_priority("very_low") == 90
    assert get_priority(49) == 49
    with pytest.raises(ValueError, match="unknown hook priority"):
        get_priority("URGENT")
    with pytest.raises(ValueError, match="between 0 and 100"):
        get_priority(101)


def test_run_event_sequence_and_configured_priorities(make_runner, tiny_plugin):
    runner = make_runner(
        runner={"type": "EpochBasedRunner", "max_epochs": 1},
        custom_hooks=[
            {"type": "RecorderHook", "tag": "a", "priority": 60},
            {"type": "RecorderHook", "tag": "b", "priority": "ABOVE_NORMAL"},
            {"type": "RecorderHook", "tag": "c", "priority": 40},
        ],
        checkpoint_config={"interval": 1, "priority": 5},
    )
    names = [type(h).__name__ for h in runner.hooks]
    # checkpoint priority 5 overrides NORMAL: it now runs before the LR schedule (10)
    assert names[:3] == ["CheckpointHook", "ParamSchedulerHook", "OptimizerHook"]
    assert [getattr(h, "tag", None) for h in runner.hooks if type(h).__name__ == "RecorderHook"] == [
        "b",
        "c",
        "a",
    ]
    runner.train()
    calls = tiny_plugin.CALLS
    a_events = [e for t, e in calls if t == "a"]
    # 8 samples / batch 2 = 4 iterations; 6 val samples / batch 4 = 2 val iterations.
    expected = (
        ["before_run", "before_train_epoch"]
        + ["before_train_iter", "after_train_iter"] * 4
        + ["before_save_checkpoint", "after_train_epoch", "before_val_epoch"]
        + ["before_val_iter", "after_val_iter"] * 2
        + ["after_val_epoch", "after_run"]
    )
    assert a_events == expected
    # within each event, b and c (40, registration order) come before a (60)
    for event in ("before_train_iter", "after_train_epoch", "after_run"):
        assert [t for t, e in calls if e == event][:3] == ["b", "c", "a"]
