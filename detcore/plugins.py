"""Plugin discovery and the process-wide plugin manager.

Plugins are Python modules registered on a pluggy ``PluginManager``. They come from two places,
loaded through one function (:meth:`DetcorePluginManager.load_plugin`):

- the kernel's own built-ins (:data:`BUILTIN_PLUGINS`), like pytest's internal plugins;
- entry points in the group ``detcore.plugins`` of installed distributions; the entry point's name
  is the plugin's short name (``retinanet = "det_plugin_retinanet"``).

The contract, held as pytest holds its own:

- a plugin whose import raises, which implements a hook that matches no spec (checked when it is
  registered, as pluggy's ``check_pending`` does, with the nearest spec named), or whose registration
  hook raises when the registry calls it (:meth:`DetcorePluginManager.mark_failed`) is recorded as
  ``failed`` with the reason, unregistered, and skipped; the other plugins keep working;
- plugins are blocked by name with the ``DETCORE_DISABLE_PLUGINS`` environment variable
  (comma-separated) or ``-p no:NAME`` on the command line; the built-ins cannot be blocked (the kernel
  does not work without them), which is a :class:`PluginError`.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pluggy

from detcore import hookspecs
from detcore.errors import PluginError, nearest

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
    error: str | None = None  # why, when status == "failed": a message or a traceback
    files: list[str] = field(default_factory=list)
    failed_at: str | None = None  # "import", "hook check" or the registration hook that raised
    reported: bool = False  # the error was printed to stderr already (report_failures)

    @property
    def loaded(self) -> bool:
        return self.status == "loaded"


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _refuse_blocking_builtins(names: Iterable[str], how: str) -> None:
    """Raise :class:`PluginError` if ``names`` holds a built-in plugin (``how`` says how it was blocked)."""
    essential = sorted(set(names) & set(BUILTIN_PLUGINS))
    if essential:
        raise PluginError(
            f"cannot block {', '.join(repr(n) for n in essential)} ({how}): the built-in plugins of detcore "
            "cannot be blocked, the kernel's layers, losses, data, metrics, engine and models come from them "
            f"(built-ins: {', '.join(BUILTIN_PLUGINS)}). Only installed plugins can be blocked."
        )


class DetcorePluginManager(pluggy.PluginManager):
    """pluggy's manager with detcore's specs, discovery and failure bookkeeping."""

    def __init__(self, blocked: Iterable[str] = ()) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        from_env = _blocked_from_env()
        _refuse_blocking_builtins(from_env, f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, '')}")
        _refuse_blocking_builtins(blocked, "blocked=")
        for name in set(blocked) | from_env:
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
            info.failed_at = "import"
            return info
        unknown = self._unknown_hooks(name)
        if unknown:
            self.mark_failed(name, unknown, failed_at="hook check")
        return info

    def _unknown_hooks(self, name: str) -> str | None:
        """Why plugin ``name`` is refused: the hooks it implements that match no spec (else ``None``)."""
        plugin = self.get_plugin(name)
        specs = [n for n in vars(self.hook) if not n.startswith("_") and getattr(self.hook, n).has_spec()]
        problems = []
        for caller in self.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            if any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
                hints = nearest(caller.name, specs, n=1)
                problems.append(
                    f"hook '{caller.name}' matches no hook specification"
                    + (f"; did you mean '{hints[0]}'?" if hints else "")
                )
        if not problems:
            return None
        info = self.infos[name]
        return (
            f"plugin '{name}' (distribution '{info.distribution}', module {info.module}): "
            + "; ".join(problems)
            + ". Hook names are listed in detcore.hookspecs (mark a hook that may be absent with "
            "@hookimpl(optionalhook=True))"
        )

    def mark_failed(self, name: str, error: str, failed_at: str) -> PluginInfo:
        """Record plugin ``name`` as failed (``error`` says why) and unregister it, so it offers nothing.

        Used for plugins refused at load time and by the registry when a registration hook raises.
        """
        info = self.infos.get(name)
        if info is None:  # registered directly on the manager, not through load_plugin
            info = self.infos[name] = PluginInfo(name, "?", "?", "?")
        info.status, info.error, info.failed_at = "failed", error, failed_at
        if self.get_plugin(name) is not None:
            self.unregister(name=name)
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
    """The folders of a distribution's top-level packages that exist on disk (an installed copy);
    never the site-packages folder holding them. Editable installs list none here: the imported
    module's file, added when the plugin loads, says where the source is."""
    if dist is None:
        return []
    try:
        tops = (dist.read_text("top_level.txt") or "").split()
        found = [dist.locate_file(top) for top in tops]
        return [str(path) for path in found if Path(str(path)).is_dir()]
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
        report_failures(manager.failures())
        _MANAGER = manager
    return _MANAGER


def report_failures(infos: Iterable[PluginInfo]) -> None:
    """Tell stderr which plugins failed and are skipped, and why."""
    for info in infos:
        print(
            f"detcore: plugin '{info.name}' from distribution '{info.distribution}' failed "
            f"({info.failed_at}) and is skipped:\n{info.error}",
            file=sys.stderr,
        )
        info.reported = True


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
    _refuse_blocking_builtins(names, "-p no:NAME")
    current = _blocked_from_env() | set(names)
    os.environ[DISABLE_ENV] = ",".join(sorted(current))
    reset_plugin_manager(None)


def _similarity(a: str, b: str) -> float:
    import difflib

    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def _satisfiable(specifier) -> bool:
    """Whether some version satisfies ``specifier`` (a ``packaging`` SpecifierSet): tried on each bound,
    just above and below it, so contradictions such as ``>=2,<1`` or ``==1.0,==2.0`` are caught."""
    from packaging.version import InvalidVersion, Version

    candidates = {"0", "0.0.1"}
    for spec in specifier:
        text = spec.version.replace(".*", "")
        try:
            version = Version(text)
        except InvalidVersion:
            return True  # arbitrary equality (===) and the like: not ours to judge
        release = ".".join(str(part) for part in version.release)
        candidates |= {text, release, f"{release}.1", f"{release}.0.1", f"{release}.0.0.1",
                       f"{version.major + 1}"}
    return any(specifier.contains(c, prereleases=True) for c in candidates)


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
        if req.specifier and not _satisfiable(req.specifier):
            raise PluginError(
                f"{prefix}plugins: '{spec}' can never be satisfied: no version is {req.specifier}; "
                "fix the version range in the config's plugins list"
            )
        name = req.name.replace("-", "_")
        info = manager.infos.get(req.name) or manager.infos.get(name)
        if info is None:
            installed = [n for n, i in manager.infos.items() if not i.builtin]
            # only near misses (a typo), not any name sharing a few letters ('gridnet' is not 'resnet')
            close = [n for n in nearest(req.name, installed) if _similarity(req.name, n) >= 0.75]
            hint = f" Did you mean '{close[0]}' (installed)? Otherwise install it" if close else " Install it"
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}', which is not installed."
                f"{hint} with: pip install {plugin_distribution_name(req.name)}"
            )
        if info.status == "blocked":
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}', which is blocked "
                f"(remove it from {DISABLE_ENV} or drop '-p no:{req.name}')"
            )
        if info.status == "failed":
            detail = " (its traceback is printed above)" if info.reported else f":\n{info.error}"
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}' (distribution '{info.distribution}'), "
                f"which failed ({info.failed_at}){detail}"
            )
        if req.specifier and not req.specifier.contains(info.version, prereleases=True):
            raise PluginError(
                f"{prefix}this config needs plugin '{req.name}{req.specifier}', but version {info.version} "
                f"of '{info.distribution}' is installed. Install a matching version: "
                f"pip install '{info.distribution}{req.specifier}'"
            )
