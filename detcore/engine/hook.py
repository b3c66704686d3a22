"""Run hooks and the run's own plugin manager.

A run hook is an object whose methods are named after the run events of
:class:`detcore.hookspecs.RunEventSpecs` (``before_run``, ``after_train_iter``, ...). The methods need
no marker: :class:`RunHookManager` counts any method whose name is an event as an implementation,
the way pytest accepts unmarked ``pytest_*`` functions. Each hook has a ``priority`` (smaller runs
first); ties keep the order of registration.
"""

from __future__ import annotations

from typing import Any, Iterable

import pluggy

from detcore.hookspecs import PROJECT, RUN_EVENTS, RunEventSpecs

#: Named priorities (smaller runs first).
PRIORITIES: dict[str, int] = {
    "HIGHEST": 0,
    "VERY_HIGH": 10,
    "HIGH": 30,
    "ABOVE_NORMAL": 40,
    "NORMAL": 50,
    "BELOW_NORMAL": 60,
    "LOW": 70,
    "VERY_LOW": 90,
    "LOWEST": 100,
}


def get_priority(priority: int | str) -> int:
    """An int priority from an int or a name in :data:`PRIORITIES` (case-insensitive)."""
    if isinstance(priority, bool):
        raise ValueError(f"hook priority must be an int 0..100 or a name, got {priority!r}")
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f"hook priority must be between 0 and 100, got {priority}")
        return priority
    if isinstance(priority, str) and priority.upper() in PRIORITIES:
        return PRIORITIES[priority.upper()]
    raise ValueError(
        f"unknown hook priority {priority!r}; use an int 0..100 or one of {', '.join(PRIORITIES)}"
    )


class Hook:
    """Base class of run hooks. Subclasses define methods named as run events.

    ``priority`` may be an int (0..100) or a name (``"NORMAL"``); ``None`` keeps the class default.
    """

    default_priority: int | str = "NORMAL"

    def __init__(self, priority: int | str | None = None) -> None:
        self.priority = get_priority(self.default_priority if priority is None else priority)

    @property
    def name(self) -> str:
        return type(self).__name__

    def events(self) -> list[str]:
        """The run events this hook implements."""
        return [e for e in RUN_EVENTS if callable(getattr(self, e, None))]

    def __repr__(self) -> str:
        return f"{self.name}(priority={self.priority})"


class RunHookManager(pluggy.PluginManager):
    """The plugin manager a run owns: the run-event specs plus its hook objects in priority order."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(RunEventSpecs)
        self._ordered: list[Hook] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in RUN_EVENTS and callable(getattr(plugin, name, None)):
            return {}
        return opts

    def set_hooks(self, hooks: Iterable[Hook]) -> list[Hook]:
        """Register ``hooks`` (replacing any registered before), ordered by priority; returns call order.

        pluggy calls the implementation registered last first, so hooks are registered from the
        lowest to the highest precedence.
        """
        for hook in self._ordered:
            self.unregister(hook)
        indexed = list(enumerate(hooks))
        for _, hook in indexed:
            if not isinstance(hook, Hook):
                raise TypeError(f"run hooks must be detcore.engine.Hook instances, got {type(hook).__name__}")
        ordered = [h for _, h in sorted(indexed, key=lambda p: (p[1].priority, p[0]))]
        for i, hook in enumerate(reversed(ordered)):
            self.register(hook, name=f"{len(ordered) - 1 - i:03d}-{hook.name}-{id(hook)}")
        self._ordered = ordered
        return list(ordered)

    @property
    def hooks(self) -> list[Hook]:
        return list(self._ordered)
