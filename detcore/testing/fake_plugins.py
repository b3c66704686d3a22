"""Fake plugin modules on a private plugin manager: registry and plugin-contract tests without installs."""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Iterable, Mapping, Tuple

from detcore.hookspecs import hookimpl

#: one fake plugin: (short name, distribution, version, {hook name: table or function})
PluginSpec = Tuple[str, str, str, Mapping[str, Any]]


def make_plugin_module(module_name: str, **hooks: Mapping[str, Callable] | Callable) -> types.ModuleType:
    """A module (put in ``sys.modules``) whose ``@hookimpl`` functions, one per keyword, return the given
    tables; a function instead of a table is the hook's body, called when the registry is built."""
    module = types.ModuleType(module_name)
    for hook_name, table in hooks.items():

        def impl(_table=table):
            return _table() if callable(_table) else _table

        impl.__name__ = hook_name
        setattr(module, hook_name, hookimpl(impl))
    sys.modules[module_name] = module
    return module


class FakePlugins:
    """``env(plugins=[(name, dist, version, hooks)], blocked=())`` -> ``(manager, registry)``.

    Each call makes a fresh :class:`~detcore.plugins.DetcorePluginManager` that loads one module per
    plugin through ``load_plugin`` (so failures are bookkept as for installed plugins) and builds a
    :class:`~detcore.registry.Registry` from it. :meth:`close` removes the modules from ``sys.modules``.
    """

    def __init__(self) -> None:
        self.modules: list[str] = []

    def __call__(self, plugins: Iterable[PluginSpec], blocked: Iterable[str] = ()) -> tuple[Any, Any]:
        from detcore.plugins import DetcorePluginManager
        from detcore.registry import Registry

        manager = DetcorePluginManager(blocked=blocked)
        for name, dist, version, hooks in plugins:
            module_name = f"_detcore_test_plugin_{name}"
            make_plugin_module(module_name, **hooks)
            self.modules.append(module_name)
            manager.load_plugin(name, module_name, dist, version)
        return manager, Registry(manager)

    def close(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)
        self.modules.clear()
