"""Plugin discovery and the process-wide plugin manager.

Plugins are Python modules registered on a pluggy ``PluginManager``. They come from two places,
loaded through one function (:meth:`DetcorePluginManager.load_plugin`):

- the kernel's own built-ins (:data:`BUILTIN_PLUGINS`), like pytest's internal plugins;
- entry points in the group ``detcore.plugins`` of installed distributions; the entry point's name
  is the plugin's short name (``retinanet = "det_plugin_retinanet"``).

A plugin whose import raises is recorded with its traceback and skipped; the others keep working.
Plugins are blocked by name with the ``DETCORE_DISABLE_PLUGINS`` environment variable
(comma-separated) or ``-p no:NAME`` on the command line.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Iterable

import pluggy

from detcore import hookspecs
from detcore.errors import PluginError

if sys.version_info >= (3, 10):
    from importlib import metadata
else:  # pragma: no cover - exercised on Python 3.9 only
    import importlib_metadata as metadata

ENTRY_POINT_GROUP = "detcore.plugins"
DISABLE_ENV = "DETCORE_DISABLE_PLUGINS"

#: The kernel's built-in plugins: short name -> module. Loaded exactly like entry points.
BUILTIN_PLUGINS: dict[str, str] = {
    "detcore.layers": "detcore.builtin.layers",
    "detcore.losses": "detcore.builtin.losses",
    "detcore.task_utils": "detcore.builtin.task_utils",
    "detcore.data": "detcore.builtin.data",
    "detcore.metrics": "detcore.builtin.metrics",
    "detcore.engine": "detcore.builtin.engine",
    "detcore.models": "detcore.builtin.models",
}


@dataclass
class PluginInfo:
    """What is known about one plugin, loaded or not."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool = False
    status: str = "loaded"  # loaded | blocked | failed
    error: str | None = None  # the traceback when status == "failed"
    files: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class DetcorePluginManager(pluggy.PluginManager):
    """pluggy's manager with detcore's specs, discovery and failure bookkeeping."""

    def __init__(self, blocked: Iterable[str] = ()) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        for name in set(blocked) | _blocked_from_env():
            self.set_blocked(name)

    # -- loading ---------------------------------------------------------------------------------

    def load_plugin(
        self,
        name: str,
        module_name: str,
        distribution: str,
        version: str,
        builtin: bool = False,
        files: list[str] | None = None,
    ) -> PluginInfo:
        """Import ``module_name`` and register it as plugin ``name``; never raises on import errors."""
        info = PluginInfo(name, module_name, distribution, version, builtin, files=files or [])
        self.infos[name] = info
        if self.is_blocked(name):
            info.status = "blocked"
            return info
        try:
            module = _import(module_name)
            self.register(module, name=name)
            module_file = getattr(module, "__file__", None)
            if module_file:
                info.files.insert(0, module_file)
        except Exception:  # a broken plugin must not take the others down
            info.status = "failed"
            info.error = traceback.format_exc()
        return info

    def load_builtins(self) -> None:
        from detcore import __version__

        for name, module_name in BUILTIN_PLUGINS.items():
            self.load_plugin(name, module_name, "detcore", __version__, builtin=True)

    def load_entrypoint_plugins(self) -> None:
        """Load every entry point of the group ``detcore.plugins``."""
        seen: set[str] = set()
        for ep in _entry_points():
            if ep.name in seen:
                continue  # the same distribution visible twice on sys.path
            seen.add(ep.name)
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            files = _distribution_location(dist)
            self.load_plugin(ep.name, ep.value, dist_name, version, files=files)

    # -- queries ---------------------------------------------------------------------------------

    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.status == "failed"]

    def distribution_of(self, plugin_name: str) -> str:
        info = self.infos.get(plugin_name)
        return info.distribution if info else "?"


def _import(module_name: str) -> ModuleType:
    """Import ``pkg.mod`` or ``pkg.mod:attr`` (entry-point value syntax)."""
    import importlib

    module_part, _, attr = module_name.partition(":")
    module = importlib.import_module(module_part)
    return getattr(module, attr) if attr else module


def _entry_points() -> list:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # pragma: no cover - old importlib_metadata


def _distribution_location(dist) -> list[str]:
    if dist is None:
        return []
    try:
        return [str(dist.locate_file(""))]
    except Exception:  # noqa: BLE001 - location is informational only
        return []


_MANAGER: DetcorePluginManager | None = None


def get_plugin_manager() -> DetcorePluginManager:
    """The process-wide manager, created and loaded on first use."""
    global _MANAGER
    if _MANAGER is None:
        manager = DetcorePluginManager()
        manager.load_builtins()
        manager.load_entrypoint_plugins()
        for info in manager.failures():
            print(
                f"detcore: plugin '{info.name}' from distribution '{info.distribution}' failed to load "
                f"and is skipped:\n{info.error}",
                file=sys.stderr,
            )
        _MANAGER = manager
    return _MANAGER


def reset_plugin_manager(manager: DetcorePluginManager | None = None) -> None:
    """Replace (or forget) the process-wide manager; the registry is rebuilt on next use."""
    global _MANAGER
    _MANAGER = manager
    from detcore import registry

    registry.reset_registry()


def block_plugins(names: Iterable[str]) -> None:
    """Block plugins for this process (as ``-p no:NAME`` does) before the manager is first used."""
    names = [n for n in names if n]
    if not names:
        return
    current = _blocked_from_env() | set(names)
    os.environ[DISABLE_ENV] = ",".join(sorted(current))
    reset_plugin_manager(None)


def plugin_distribution_name(short_name: str) -> str:
    """The conventional distribution name of a plugin: ``htc`` -> ``det-plugin-htc``."""
    return f"det-plugin-{short_name.replace('_', '-')}"


def check_required_plugins(specs: Iterable[str], manager: DetcorePluginManager, where: str = "") -> None:
    """Check a config's ``plugins = [...]`` list: each plugin installed, loaded and of a matching version.

    Raises :class:`PluginError` naming the install command or both versions.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    prefix = f"{where}: " if where else ""
    for spec in specs:
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise PluginError(
                f"{prefix}plugins: '{spec}' is not a valid plugin requirement ({exc})"
            ) from None
        name = req.name.replace("-", "_")
        info = manager.infos.get(req.name) or manager.infos.get(name)
        if info is None:
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}', which is not installed. "
                f"Install it with: pip install {plugin_distribution_name(req.name)}"
            )
        if info.status == "blocked":
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}', which is blocked "
                f"(remove it from {DISABLE_ENV} or drop '-p no:{req.name}')"
            )
        if info.status == "failed":
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}' (distribution '{info.distribution}'), "
                f"which failed to import:\n{info.error}"
            )
        if req.specifier and not req.specifier.contains(info.version, prereleases=True):
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}{req.specifier}', but version {info.version} "
                f"of '{info.distribution}' is installed. Install a matching version: "
                f"pip install '{info.distribution}{req.specifier}'"
            )
