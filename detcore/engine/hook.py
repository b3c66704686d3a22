"""Run hooks and the run's own plugin manager.

A run hook is any object whose methods are named after the run events of
:class:`detcore.hookspecs.RunEventSpecs` (``before_run``, ``after_train_iter``, ...). Subclassing
:class:`Hook` is a convenience, not a requirement: a plain class whose event methods carry
``@detcore.hookspecs.hookimpl`` (as a plugin's hook usually is) works the same, and so do unmarked
methods named as events (the way pytest accepts unmarked ``pytest_*`` functions).

The contract, checked when hooks are registered on a run (:func:`check_run_hook`):

- the object implements at least one run event;
- every ``@hookimpl``-marked method and every public method named ``before_*`` / ``after_*`` is a run
  event (a misspelt event is refused with the nearest event name, as pluggy's ``check_pending`` does);
- an implementation takes a subset of the spec's arguments (pluggy passes only the names it asks for);
- ``priority`` (optional attribute, default ``"NORMAL"``) is an int 0..100 or a name in
  :data:`PRIORITIES`. Smaller runs first; ties keep the order of registration.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

import pluggy

from detcore.errors import nearest
from detcore.hookspecs import PROJECT, RUN_EVENTS, RunEventSpecs, hookimpl

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

_IMPL_ATTR = hookimpl.project_name + "_impl"  # where pluggy's marker stores its options
_EVENT_PREFIXES = ("before_", "after_")


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
    """Optional base class of run hooks: a ``priority`` from an int, a name or the class default.

    ``priority`` may be an int (0..100) or a name (``"NORMAL"``); ``None`` keeps ``default_priority``.
    """

    default_priority: int | str = "NORMAL"

    def __init__(self, priority: int | str | None = None) -> None:
        self.priority = get_priority(self.default_priority if priority is None else priority)

    @property
    def name(self) -> str:
        return type(self).__name__

    def events(self) -> list[str]:
        """The run events this hook implements."""
        return hook_events(self)

    def __repr__(self) -> str:
        return f"{self.name}(priority={self.priority})"


def _routine(obj: Any, name: str) -> Any:
    """``obj.name`` when it is a function or a bound method, else ``None`` (properties are not run)."""
    if isinstance(inspect.getattr_static(obj, name, None), property):
        return None
    attr = getattr(obj, name, None)
    return attr if inspect.isfunction(attr) or inspect.ismethod(attr) else None


def hook_events(hook: Any) -> list[str]:
    """The run events ``hook`` implements (marked with ``@hookimpl`` or not), in spec order."""
    return [event for event in RUN_EVENTS if _routine(hook, event) is not None]


def hook_name(hook: Any) -> str:
    """A hook's display name: its ``name`` attribute when it is a string, else its class name."""
    name = getattr(hook, "name", None)
    return name if isinstance(name, str) else type(hook).__name__


def hook_priority(hook: Any) -> int:
    """A hook's int priority: its ``priority`` attribute (int or name), ``NORMAL`` when it has none."""
    try:
        return get_priority(getattr(hook, "priority", "NORMAL"))
    except ValueError as exc:
        raise ValueError(f"run hook {hook_name(hook)}: {exc}") from None


def _spec_arguments(event: str) -> tuple[str, ...]:
    params = inspect.signature(getattr(RunEventSpecs, event)).parameters
    return tuple(p for p in params if p != "self")


_SPEC_ARGS: dict[str, tuple[str, ...]] = {event: _spec_arguments(event) for event in RUN_EVENTS}


def _extra_arguments(method: Any, event: str) -> list[str]:
    """The arguments without a default that ``method`` takes and ``event`` does not pass."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return []
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return [a for a in required if a not in _SPEC_ARGS[event]]


def check_run_hook(hook: Any) -> None:
    """Raise ``TypeError`` unless ``hook`` fulfils the run-hook contract (see the module docstring)."""
    name = hook_name(hook)
    for attr in dir(hook):
        if attr.startswith("_") or attr in RUN_EVENTS:
            continue
        method = _routine(hook, attr)
        if method is None:
            continue
        marked = getattr(method, _IMPL_ATTR, None) is not None
        if marked or attr.startswith(_EVENT_PREFIXES):
            hints = nearest(attr, RUN_EVENTS, n=1)
            raise TypeError(
                f"run hook {name} ({type(hook).__module__}.{type(hook).__qualname__}): method '{attr}' "
                f"{'is marked @hookimpl but ' if marked else 'looks like a run event but '}matches no run "
                "event" + (f"; did you mean '{hints[0]}'?" if hints else "")
                + f" Run events: {', '.join(RUN_EVENTS)}"
            )
    events = hook_events(hook)
    for event in events:
        extra = _extra_arguments(_routine(hook, event), event)
        if extra:
            raise TypeError(
                f"run hook {name}: {event}() asks for argument(s) {', '.join(extra)} that the event does "
                f"not pass; it passes {', '.join(_SPEC_ARGS[event])}"
            )
    if not events:
        raise TypeError(
            f"run hook {name} ({type(hook).__module__}.{type(hook).__qualname__}) implements no run event; "
            f"define methods named as run events ({', '.join(RUN_EVENTS)})"
        )
    hook_priority(hook)


class RunHookManager(pluggy.PluginManager):
    """The plugin manager a run owns: the run-event specs plus its hook objects in priority order."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(RunEventSpecs)
        self._ordered: list[Any] = []

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in RUN_EVENTS and _routine(plugin, name) is not None:
            return {}
        return opts

    def set_hooks(self, hooks: Iterable[Any]) -> list[Any]:
        """Register ``hooks`` (replacing any registered before), ordered by priority; returns call order.

        Every hook is checked with :func:`check_run_hook` first, so a refused hook leaves the run's
        hooks as they were. pluggy calls the implementation registered last first, so hooks are
        registered from the lowest to the highest precedence.
        """
        hooks = list(hooks)
        for hook in hooks:
            check_run_hook(hook)
        for hook in self._ordered:
            self.unregister(hook)
        indexed = list(enumerate(hooks))
        ordered = [h for _, h in sorted(indexed, key=lambda p: (hook_priority(p[1]), p[0]))]
        for i, hook in enumerate(reversed(ordered)):
            self.register(hook, name=f"{len(ordered) - 1 - i:03d}-{hook_name(hook)}-{id(hook)}")
        self.check_pending()
        self._ordered = ordered
        return list(ordered)

    @property
    def hooks(self) -> list[Any]:
        return list(self._ordered)
