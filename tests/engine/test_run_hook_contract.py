"""The run-hook contract: any object whose methods are run events (``@hookimpl`` or unmarked) is a run
hook, the way docs/writing-plugins.md shows it; a misspelt or mis-signed event is refused by name."""

from __future__ import annotations

import json
import math
import sys

import pytest

from detcore.engine import Hook, RunHookManager
from detcore.hookspecs import hookimpl


class PlainMarked:
    """A plugin's run hook as the docs write it: no base class, ``@hookimpl`` on each event."""

    def __init__(self, log: list, priority: int | None = None) -> None:
        self.log = log
        if priority is not None:
            self.priority = priority

    @hookimpl
    def before_train_iter(self, batch_idx: int) -> None:
        self.log.append(("plain", batch_idx))


class Subclassed(Hook):
    def __init__(self, log: list, priority: int | str | None = None) -> None:
        super().__init__(priority)
        self.log = log

    def before_train_iter(self, batch_idx: int) -> None:
        self.log.append(("sub", batch_idx))


def test_plain_marked_class_and_hook_subclass_mix_in_priority_order():
    log: list = []
    manager = RunHookManager()
    # the plain object has no priority attribute: NORMAL (50), after the subclass at 40
    order = manager.set_hooks([PlainMarked(log), Subclassed(log, 40), PlainMarked(log, priority=10)])
    assert [type(h).__name__ for h in order] == ["PlainMarked", "Subclassed", "PlainMarked"]
    manager.hook.before_train_iter(runner=None, batch_idx=3, batch=None)
    assert log == [("plain", 3), ("sub", 3), ("plain", 3)]
    assert order[0].priority == 10 and not hasattr(order[2], "priority")


class Misspelt:
    @hookimpl
    def after_train_iteration(self, runner) -> None:  # not an event
        pass


class UnmarkedMisspelt(Hook):
    def before_trian_epoch(self, runner) -> None:
        pass


class AsksTooMuch:
    @hookimpl
    def after_val_epoch(self, runner, metrics, losses) -> None:
        pass


class NoEvents:
    def step(self) -> None:
        pass


@pytest.mark.parametrize(
    "hook, message",
    [
        (Misspelt(), r"'after_train_iteration' is marked @hookimpl but matches no run event; "
                     r"did you mean 'after_train_iter'\?"),
        (UnmarkedMisspelt(), r"'before_trian_epoch' looks like a run event .* 'before_train_epoch'"),
        (AsksTooMuch(), r"after_val_epoch\(\) asks for argument\(s\) losses .* passes runner, metrics"),
        (NoEvents(), r"run hook NoEvents .* implements no run event"),
    ],
)
def test_hooks_breaking_the_contract_are_refused_by_name(hook, message):
    manager = RunHookManager()
    kept = manager.set_hooks([Subclassed([])])
    with pytest.raises(TypeError, match=message):
        manager.set_hooks([*kept, hook])
    assert manager.hooks == kept  # the refused set left the run's hooks as they were


def test_bad_priority_attribute_names_the_hook():
    with pytest.raises(ValueError, match=r"run hook PlainMarked: unknown hook priority 'SOON'"):
        RunHookManager().set_hooks([PlainMarked([], priority="SOON")])


def test_example_plugin_hook_records_every_iteration_of_a_real_run(make_runner, tmp_path):
    pytest.importorskip("det_plugin_example", reason="det-plugin-example is not installed")
    from det_plugin_example.history_hook import LossHistoryHook

    runner = make_runner(
        plugins=["enginetest", "example>=1.0"],
        custom_hooks=[{"type": "example:LossHistoryHook", "filename": "history.json"}],
    )
    history_hooks = [h for h in runner.hooks if isinstance(h, LossHistoryHook)]
    assert len(history_hooks) == 1 and not isinstance(history_hooks[0], Hook)
    names = [type(h).__name__ for h in runner.hooks]
    # its priority 80 puts it between the EvalHook (LOW = 70) and the LoggerHook (VERY_LOW = 90)
    assert names.index("EvalHook") < names.index("LossHistoryHook") < names.index("LoggerHook")

    runner.train()
    # 2 epochs x (8 samples / batch 2) iterations; after_train_iter sees the counter before the step
    history = json.loads((tmp_path / "work" / "history.json").read_text())
    assert [r["iter"] for r in history] == list(range(8))
    for record in history:
        # the tiny detector returns loss_bbox as [l, l / 2]: parse_losses sums the list, then the total
        assert record["loss"] == pytest.approx(record["loss_cls"] + record["loss_bbox"], rel=1e-5)
        assert all(math.isfinite(v) for v in record.values())
    assert history == history_hooks[0].history


def test_runner_register_hook_accepts_plain_objects_and_refuses_non_hooks(make_runner):
    runner = make_runner()
    before = list(runner.hooks)
    log: list = []
    runner.register_hook(PlainMarked(log), priority="HIGHEST")
    assert runner.hooks[0].priority == 0 and isinstance(runner.hooks[0], PlainMarked)
    with pytest.raises(TypeError, match="implements no run event"):
        runner.register_hook(NoEvents())
    assert runner.hooks[1:] == before


def test_config_hook_breaking_the_contract_is_a_config_error(make_runner):
    from detcore import registry
    from detcore.errors import ConfigError
    from detcore.plugins import get_plugin_manager
    from detcore.testing import make_plugin_module

    hooks = {"Misspelt": Misspelt}
    module = make_plugin_module("_detcore_test_bad_run_hooks", detcore_register_run_hooks=hooks)
    manager = get_plugin_manager()
    manager.load_plugin("badhooks", module.__name__, "det-plugin-badhooks", "0.1")
    registry.reset_registry()
    try:
        with pytest.raises(ConfigError, match=r"custom_hooks\.0: 'Misspelt': run hook Misspelt .*"
                                              r"'after_train_iteration' .* did you mean 'after_train_iter'"):
            make_runner(custom_hooks=[{"type": "Misspelt"}])
    finally:
        manager.unregister(name="badhooks")
        del manager.infos["badhooks"]
        sys.modules.pop(module.__name__)
        registry.reset_registry()
