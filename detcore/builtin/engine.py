"""Built-in plugin: the engine's run hooks, loops, optimizers and learning-rate schedules."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from detcore.hookspecs import hookimpl


@hookimpl
def detcore_register_run_hooks() -> Mapping[str, Callable[..., Any]]:
    from detcore.engine.hooks import BUILTIN_HOOKS

    return dict(BUILTIN_HOOKS)


@hookimpl
def detcore_register_loops() -> Mapping[str, Callable[..., Any]]:
    from detcore.engine.loops import LOOPS

    return dict(LOOPS)


@hookimpl
def detcore_register_optimizers() -> Mapping[str, Callable[..., Any]]:
    from detcore.engine.optim import OPTIMIZERS

    return dict(OPTIMIZERS)


@hookimpl
def detcore_register_schedulers() -> Mapping[str, Callable[..., Any]]:
    from detcore.engine.schedule import SCHEDULES

    return dict(SCHEDULES)
