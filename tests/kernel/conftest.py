"""Helpers for kernel tests: fake plugin modules registered on a private plugin manager."""

from __future__ import annotations

import sys
import types
from typing import Callable

import pytest

from detcore.hookspecs import hookimpl
from detcore.plugins import DetcorePluginManager
from detcore.registry import Registry


def make_plugin_module(module_name: str, **hooks: dict[str, Callable] | Callable) -> types.ModuleType:
    """A module implementing ``detcore_register_<kind>s`` hooks that return the given tables (a function
    instead of a table is the hook's body, called when the registry is built)."""
    module = types.ModuleType(module_name)
    for hook_name, table in hooks.items():

        def impl(_table=table):
            return _table() if callable(_table) else _table

        impl.__name__ = hook_name
        setattr(module, hook_name, hookimpl(impl))
    sys.modules[module_name] = module
    return module


@pytest.fixture
def plugin_env(monkeypatch):
    """Build a (manager, registry) pair from fake plugins: ``env(plugins=[(name, dist, version, hooks)])``."""
    monkeypatch.delenv("DETCORE_DISABLE_PLUGINS", raising=False)
    created: list[str] = []

    def factory(plugins, blocked=()):
        manager = DetcorePluginManager(blocked=blocked)
        for name, dist, version, hooks in plugins:
            module_name = f"_detcore_test_plugin_{name}"
            make_plugin_module(module_name, **hooks)
            created.append(module_name)
            manager.load_plugin(name, module_name, dist, version)
        return manager, Registry(manager)

    yield factory
    for name in created:
        sys.modules.pop(name, None)
