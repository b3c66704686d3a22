"""The component registry: "build the component of kind K named N with these arguments".

The registry is filled by calling every ``detcore_register_<kind>s`` hook on the plugin manager, one
plugin at a time so that each component remembers which plugin and distribution offered it. A plugin
whose registration hook raises (or returns something other than a mapping) is marked failed on the
manager, with the reason, and offers nothing; the others keep working. A name offered by two plugins
stays usable in its qualified form ``"plugin:Name"``; the bare name is then an error that names both
distributions.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from detcore.errors import ComponentError, ConfigError, DetcoreError, config_place, located, nearest
from detcore.hookspecs import COMPONENT_KINDS
from detcore.plugins import DetcorePluginManager, PluginInfo, get_plugin_manager, report_failures
from detcore.settings import UNRESOLVED, check_settings, stage_item


@dataclass(frozen=True)
class ComponentEntry:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"


class Registry:
    """Name -> factory tables for every component kind, built from a plugin manager's hooks."""

    def __init__(self, manager: DetcorePluginManager) -> None:
        self.manager = manager
        self._by_factory: dict[int, list[str]] | None = None
        self._entries: dict[str, dict[str, list[ComponentEntry]]] = {kind: {} for kind in COMPONENT_KINDS}
        #: plugins whose registration hook raised (or returned no mapping) while this registry was built
        self.failures: list[PluginInfo] = []
        for kind, hook_name in COMPONENT_KINDS.items():
            for impl in getattr(manager.hook, hook_name).get_hookimpls():
                offered = self._call_registration_hook(impl, hook_name)
                for name, factory in (offered or {}).items():
                    entry = ComponentEntry(
                        kind, name, factory, impl.plugin_name, manager.distribution_of(impl.plugin_name)
                    )
                    self._entries[kind].setdefault(name, []).append(entry)

    def _call_registration_hook(self, impl: Any, hook_name: str) -> Mapping[str, Any] | None:
        """One plugin's ``{name: factory}`` for one kind; a plugin whose hook raises or returns something
        else is marked failed (:meth:`DetcorePluginManager.mark_failed`) and drops out of every kind."""
        plugin = impl.plugin_name
        where = f"plugin '{plugin}' (distribution '{self.manager.distribution_of(plugin)}'): {hook_name}()"
        try:
            offered = impl.function()
        except Exception:  # a broken plugin must not take the others down
            return self._drop_failed(plugin, f"{where} raised:\n{traceback.format_exc()}", hook_name)
        if offered and not isinstance(offered, Mapping):
            message = f"{where} must return a mapping name -> factory, got {type(offered).__name__}"
            return self._drop_failed(plugin, message, hook_name)
        return offered

    def _drop_failed(self, plugin: str, error: str, hook_name: str) -> None:
        self.failures.append(self.manager.mark_failed(plugin, error, failed_at=f"{hook_name}()"))
        for table in self._entries.values():  # what it registered for earlier kinds goes too
            for name in list(table):
                table[name] = [e for e in table[name] if e.plugin != plugin]
                if not table[name]:
                    del table[name]

    # -- lookup ------------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        return list(self._entries)

    def names(self, kind: str) -> list[str]:
        return sorted(self._table(kind))

    def entries(self, kind: str) -> list[ComponentEntry]:
        return [e for name in sorted(self._table(kind)) for e in self._table(kind)[name]]

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        """``{kind: [names]}`` offered by one plugin."""
        out: dict[str, list[str]] = {}
        for kind in self._entries:
            for entry in self.entries(kind):
                if entry.plugin == plugin:
                    out.setdefault(kind, []).append(entry.name)
        return out

    def _table(self, kind: str) -> dict[str, list[ComponentEntry]]:
        if kind not in self._entries:
            hint = nearest(kind, self._entries)
            raise ComponentError(
                f"unknown component kind '{kind}'"
                + (f"; did you mean '{hint[0]}'?" if hint else "")
                + f" Kinds: {', '.join(self._entries)}"
            )
        return self._entries[kind]

    def find(self, name: str) -> list[ComponentEntry]:
        """All entries named ``name`` (bare or qualified) across every kind."""
        plugin, _, bare = name.rpartition(":")
        found = []
        for table in self._entries.values():
            for entry in table.get(bare, []):
                if not plugin or entry.plugin == plugin:
                    found.append(entry)
        return found

    def get(self, kind: str, name: str) -> ComponentEntry:
        """The entry for ``name`` (``"Name"`` or ``"plugin:Name"``) of ``kind``."""
        table = self._table(kind)
        plugin, _, bare = name.rpartition(":")
        candidates = table.get(bare, [])
        if plugin:
            candidates = [e for e in candidates if e.plugin == plugin]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            offered = ", ".join(f"plugin '{e.plugin}' (distribution '{e.distribution}')" for e in candidates)
            qualified = " or ".join(f"'{e.qualified_name}'" for e in candidates)
            raise ComponentError(
                f"{kind} '{bare}' is offered by more than one plugin: {offered}. "
                f"Qualify the name as {qualified}, or block one plugin."
            )
        raise ComponentError(self._unknown_message(kind, name))

    def _unknown_message(self, kind: str, name: str) -> str:
        plugin, _, bare = name.rpartition(":")
        table = self._table(kind)
        msg = f"unknown {kind} '{name}'"
        if plugin and bare in table:
            owners = ", ".join(sorted({e.plugin for e in table[bare]}))
            return f"{msg}: plugin '{plugin}' does not offer it; offered by: {owners}"
        hints = nearest(bare, table)
        if hints:
            described = ", ".join(f"'{h}' (plugin {', '.join(e.plugin for e in table[h])})" for h in hints)
            msg += f"; nearest names: {described}"
        elsewhere = [e for e in self.find(bare) if e.kind != kind]
        if elsewhere:
            msg += f"; '{bare}' exists as a {elsewhere[0].kind} (plugin {elsewhere[0].plugin})"
        blocked = [i.name for i in self.manager.infos.values() if i.status != "loaded"]
        if blocked:
            msg += f". Not loaded (blocked or failed): {', '.join(sorted(blocked))}"
        return msg

    def lookup(self, name: str, kind: str | None = None) -> ComponentEntry:
        """The entry for ``name`` of ``kind``; with no ``kind``, of whichever kind offers it (an
        error when several do)."""
        if kind is not None:
            return self.get(kind, name)
        entries = self.find(name)
        kinds = sorted({e.kind for e in entries})
        if len(kinds) > 1:
            offered = ", ".join(f"a {e.kind} (plugin {e.plugin})" for e in entries)
            raise ComponentError(
                f"'{name}' is {offered}, and nothing says which kind is meant here (declare the parameter's "
                "kind in the parent factory's component_kinds)"
            )
        if not entries:
            everything = {e.name: e for k in self.kinds() for e in self.entries(k)}
            hints = nearest(name.rpartition(":")[2], everything)
            described = ", ".join(
                f"'{h}' ({everything[h].kind}, plugin {everything[h].plugin})" for h in hints
            )
            raise ComponentError(
                f"unknown component '{name}'" + (f"; nearest names: {described}" if described else "")
            )
        return self.get(kinds[0], name)

    def kinds_of(self, cls: type) -> list[str]:
        """The kinds under which ``cls`` or one of its bases is registered (nearest class first)."""
        if self._by_factory is None:
            self._by_factory = {}
            for kind in self._entries:
                for entry in self.entries(kind):
                    self._by_factory.setdefault(id(entry.factory), []).append(kind)
        for klass in inspect.getmro(cls) if inspect.isclass(cls) else (cls,):
            if klass is object:
                break
            kinds = self._by_factory.get(id(klass))
            if kinds:
                return kinds
        return []

    def parameter_kinds(self, factory: Callable[..., Any]) -> dict[str, str | None]:
        """The component kind of each parameter of ``factory`` that takes a component table.

        Declared by the factory as ``component_kinds = {"bbox_head": "dense_head", ...}`` (a class
        attribute, merged along the MRO, or a function attribute); a parameter not declared whose
        default is a table ``{"type": name}`` gets the kind that offers ``name``.
        """
        kinds: dict[str, str | None] = {}
        for klass in reversed(inspect.getmro(factory)) if inspect.isclass(factory) else (factory,):
            declared = vars(klass).get("component_kinds") if inspect.isclass(klass) else getattr(
                klass, "component_kinds", None
            )
            if declared:
                kinds.update(declared)
        params, _ = accepted_parameters(factory)
        for name, param in params.items():
            default = param.default
            if name in kinds or not isinstance(default, Mapping) or not isinstance(default.get("type"), str):
                continue
            offered = {e.kind for e in self.find(default["type"])}
            if len(offered) == 1:
                kinds[name] = offered.pop()
        return kinds

    def resolve_argument(
        self, owner: Callable[..., Any], source: Any, key: str, stage: int | None = None
    ) -> Any:
        """The factory of ``owner``'s sub-component at argument ``key`` and its arguments.

        ``source`` is ``owner``'s arguments (a mapping; a missing key takes the parameter's default)
        or the built owner; ``stage`` picks one item of a per-stage list of sub-components. A table
        gives ``(factory, table)``, a built object ``(type, object)``; ``None`` when there is none and
        :data:`~detcore.settings.UNRESOLVED` when it cannot be told (an unknown name, a list outside a
        stage). Used to follow settings to the component reading them (``detcore.settings``).
        """
        if isinstance(source, Mapping):
            value = source.get(key)
            if value is None:
                param = accepted_parameters(owner)[0].get(key)
                value = param.default if param is not None else None
                if value is inspect.Parameter.empty:
                    value = None
        else:
            value = getattr(source, key, None)
        value = stage_item(value, stage)
        if value is None or value is UNRESOLVED:
            return value
        if not isinstance(value, Mapping):
            return type(value), value
        if not isinstance(value.get("type"), str):
            return UNRESOLVED
        try:
            entry = self.lookup(value["type"], self.parameter_kinds(owner).get(key))
        except ComponentError:
            return UNRESOLVED
        return entry.factory, value

    # -- building ----------------------------------------------------------------------------------

    def build(self, kind: str, cfg: Mapping[str, Any] | Any, where: str = "", **defaults: Any) -> Any:
        """Build a component of ``kind`` from a config table ``{"type": name, **kwargs}``.

        ``defaults`` are passed unless the table sets them. An already-built object is returned as
        it is (components compose in Python as well as from configs), unless its class is registered
        as another kind only; ``None`` stays ``None``. The table's arguments are checked against the
        factory's signature and its declared settings (``train_cfg`` / ``test_cfg``) first.
        """
        where = config_place(where)
        where_ = f"{where}: " if where else ""
        if cfg is None:
            return None
        if not isinstance(cfg, Mapping):
            return self._built(kind, cfg, where_)
        args = dict(cfg)
        if "type" not in args:
            raise ConfigError(f"{where_}a {kind} table needs a 'type' key; keys given: {sorted(args)}")
        name = args.pop("type")
        try:
            entry = self.get(kind, name)
        except ComponentError as exc:
            raise ComponentError(f"{where_}{exc}") from None
        kwargs = {**defaults, **args}
        check_arguments(entry, kwargs, where=where)
        check_settings(entry.factory, kwargs, where=where, resolver=self.resolve_argument)
        try:
            return entry.factory(**kwargs)
        except DetcoreError:
            raise
        except Exception as exc:  # a constructor's own check (ValueError, KeyError, ...): name the table
            located(exc, where or f"{kind} '{name}'")
            raise

    def _built(self, kind: str, obj: Any, where_: str) -> Any:
        if isinstance(obj, (str, bytes, int, float)):
            raise ConfigError(
                f"{where_}a {kind} must be a table {{type = ...}} or a built object, got "
                f"{type(obj).__name__} {obj!r}"
            )
        kinds = self.kinds_of(type(obj))
        if kinds and kind not in kinds:
            raise ConfigError(
                f"{where_}a {kind} is expected, got a built {kinds[0]} ({type(obj).__name__})"
            )
        return obj


def accepted_parameters(factory: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters a factory accepts and whether it also takes arbitrary ``**kwargs``.

    For a class whose ``__init__`` forwards ``**kwargs`` to its base, the bases' parameters are
    collected along the MRO until one ``__init__`` stops forwarding. Cached per factory (validating a
    config asks for the same factories many times).
    """
    try:
        params, open_ended = _cached_parameters(factory)
    except TypeError:  # an unhashable callable
        params, open_ended = _accepted_parameters(factory)
    return dict(params), open_ended


def _accepted_parameters(factory: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    params: dict[str, inspect.Parameter] = {}
    targets = (
        [c.__init__ for c in inspect.getmro(factory) if "__init__" in vars(c)]
        if inspect.isclass(factory)
        else [factory]
    )
    for target in targets:
        if target is object.__init__:
            return params, False
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return params, True
        var_kw = False
        for p in sig.parameters.values():
            if p.name == "self" or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                var_kw = True
                continue
            params.setdefault(p.name, p)
        if not var_kw:
            return params, False
    return params, True


_cached_parameters = functools.lru_cache(maxsize=4096)(_accepted_parameters)


def check_arguments(
    entry: ComponentEntry, kwargs: Mapping[str, Any], where: str = "", require: bool = True
) -> None:
    """Raise :class:`ConfigError` if ``kwargs`` has a key the factory does not take.

    With ``require`` it also checks that every parameter without a default is given (at build time;
    a config table alone may leave out what its parent passes in, such as ``num_classes``).
    """
    params, open_ended = accepted_parameters(entry.factory)
    prefix = f"{where}: " if where else ""
    if not open_ended:
        for key in kwargs:
            if key not in params and key != "type":
                hints = nearest(key, params)
                hint = f"; nearest valid key: '{hints[0]}'" if hints else ""
                raise ConfigError(
                    f"{prefix}unknown key '{key}' for {entry.kind} '{entry.name}' (plugin {entry.plugin})"
                    f"{hint}. Valid keys: {', '.join(sorted(params))}"
                )
    if not require:
        return
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in kwargs
    ]
    if missing:
        raise ConfigError(
            f"{prefix}{entry.kind} '{entry.name}' (plugin {entry.plugin}) needs key(s) "
            f"{', '.join(repr(m) for m in missing)}"
        )


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The registry of the process-wide plugin manager, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry(get_plugin_manager())
        report_failures(_REGISTRY.failures)
    return _REGISTRY


def reset_registry() -> None:
    global _REGISTRY
    _REGISTRY = None


def build(kind: str, cfg: Mapping[str, Any] | Any, where: str = "", **defaults: Any) -> Any:
    """Build a component of ``kind`` from a config table with the process-wide registry."""
    return get_registry().build(kind, cfg, where=where, **defaults)
