"""Declared settings: the keys a component reads from its ``train_cfg`` / ``test_cfg`` tables.

A component declares what it reads as class attributes, next to the code that reads it::

    class AnchorHead(BaseDenseHead):
        train_settings = Settings(
            assigner=Key(kind="task_util", default=REQUIRED, doc="assigns anchors to the ground truth"),
            allowed_border=Key(int, -1, doc="anchors this far outside the image still count; -1: all"),
        )
        test_settings = Settings(score_thr=Key(float, REQUIRED), nms=Key(NMS_SETTINGS, REQUIRED))

A component that hands its tables on declares where they go, so the keys are still checked by the
component that reads them::

    class SingleStageDetector(BaseDetector):
        train_settings = Delegate("bbox_head")           # the whole table goes to the bbox head
    class TwoStageDetector(BaseDetector):
        train_settings = Settings(rpn=Delegate("rpn_head"),
                                  rpn_proposal=Delegate("rpn_head", phase="test_cfg"),
                                  rcnn=Delegate("roi_head"))
    class CascadeRoIHead(BaseRoIHead):
        train_settings = PerStage(StandardRoIHead.train_settings)   # one table per stage

:func:`check_settings` reads these declarations from the factory's class without building anything;
``Registry.build`` calls it before a factory runs, the config validator calls it with callbacks that
validate the component tables inside (assigners, samplers), and constructors call :func:`checked` so
that a component composed in Python is checked too. A class without a declaration is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

from detcore.errors import ConfigError, nearest

#: the constructor parameter -> the class attribute declaring its keys
SETTINGS_ATTRS: dict[str, str] = {"train_cfg": "train_settings", "test_cfg": "test_settings"}


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: default of a key that must be given whenever its table is
REQUIRED: Any = _Required()


class SettingsError(ConfigError):
    """A settings value is wrong: ``path`` is the key path from the component's arguments
    (``"test_cfg.nms.iou_threshold"``), ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _Unresolved:
    def __repr__(self) -> str:
        return "UNRESOLVED"


#: what a resolver gives for a sub-component that exists but whose class it cannot tell
UNRESOLVED: Any = _Unresolved()


def stage_item(value: Any, stage: int | None) -> Any:
    """``value[stage]`` for a per-stage list of components inside a :class:`PerStage` check;
    :data:`UNRESOLVED` for a list outside one (or too short); other values as they are."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ModuleList":
        if stage is None or stage >= len(value):
            return UNRESOLVED
        return value[stage]
    return value


def _object_resolver(owner: type, source: Any, key: str, stage: int | None = None) -> Any:
    """Sub-components that are built objects (an argument of ``source`` or an attribute of it)."""
    value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
    value = stage_item(value, stage)
    if value is None or value is UNRESOLVED:
        return value
    if isinstance(value, Mapping):
        return UNRESOLVED
    return type(value), value


#: ``resolver(owner_class, source, key, stage) -> (class, source) | None | UNRESOLVED``: the class of
#: the owner's sub-component at argument ``key`` (item ``stage`` of a per-stage list) and where its own
#: arguments are (a table or the built object); ``None`` when there is none
Resolver = Callable[[type, Any, str, "int | None"], Any]


@dataclass(frozen=True)
class Context:
    """What a check needs besides the value: whose settings these are and how to reach sub-components.

    ``owner`` is the class whose settings are checked and ``source`` its arguments (a mapping) or the
    built owner; ``component(value, path, kind)`` is called for every component table found in the
    settings, ``unchecked(value, path)`` for every table no declaration covers.
    """

    owner: type
    source: Any
    phase: str
    resolver: Resolver = _object_resolver
    #: the stage being checked inside a :class:`PerStage` (selects per-stage sub-components)
    stage: int | None = None
    component: Callable[[Any, str, str], None] = lambda value, path, kind: None
    unchecked: Callable[[Any, str], None] = lambda value, path: None

    @property
    def name(self) -> str:
        return self.owner.__name__

    @property
    def where(self) -> str:
        """``"RetinaHead's test_cfg"``, for messages."""
        return f"{self.name}'s {self.phase}"

    def resolve(self, key: str) -> Any:
        return self.resolver(self.owner, self.source, key, self.stage)


class Node:
    """A declaration that checks one value of a settings table."""

    def check(self, value: Any, path: str, ctx: Context) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Key(Node):
    """One key: its type (a Python type, a tuple of them, or a nested :class:`Node`), its default
    (:data:`REQUIRED`: must be given), the registry ``kind`` when the value is a component table
    (a ``{type = ...}`` table or an already-built object), and a one-line ``doc``."""

    type_: Any = None
    default: Any = None
    kind: str | None = None
    doc: str = ""

    def check(self, value: Any, path: str, ctx: Context) -> None:
        if value is None and self.default is None:
            return
        if self.kind is not None:
            if isinstance(value, Mapping) and not isinstance(value.get("type"), str):
                raise SettingsError(path, f"a {self.kind} table needs a 'type' key ({ctx.where})")
            if isinstance(value, (str, bytes, int, float, list, tuple)):
                raise SettingsError(
                    path, f"expects a {self.kind} table or a built object ({ctx.where}), got "
                    f"{type(value).__name__} {value!r}"
                )
            ctx.component(value, path, self.kind)
            return
        if isinstance(self.type_, Node):
            self.type_.check(value, path, ctx)
            return
        if self.type_ is None:
            return
        types = self.type_ if isinstance(self.type_, tuple) else (self.type_,)
        if not _isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise SettingsError(
                path, f"expects {names} ({ctx.where}), got {type(value).__name__} {value!r}"
            )

    def describe(self) -> str:
        if self.kind is not None:
            return f"{self.kind} table"
        if isinstance(self.type_, Node):
            return self.type_.describe()
        if self.type_ is None:
            return "any"
        types = self.type_ if isinstance(self.type_, tuple) else (self.type_,)
        return " | ".join(t.__name__ for t in types)


def _isinstance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int to Python, not to a config
    if isinstance(value, int) and float in types:
        return True
    if isinstance(value, (list, tuple)) and (list in types or tuple in types):
        return True
    return isinstance(value, types)


class Settings(Node):
    """A table with declared keys: an unknown key is refused with the nearest declared one, a
    :data:`REQUIRED` key must be present, and each value is checked by its :class:`Key`.

    ``.including(Delegate("bbox_head"), ...)`` adds the keys that sub-components declare for the same
    table (a RoI head passes its ``train_cfg`` on to its box and mask heads, which read ``pos_weight``
    and ``mask_size``): an absent sub-component adds none; one whose class cannot be told (an
    unresolvable table) leaves the table open to unknown keys.
    """

    def __init__(self, keys: Mapping[str, Node] | None = None, /, **more: Node) -> None:
        self.keys: dict[str, Node] = {**(keys or {}), **more}
        self.includes: tuple[Delegate, ...] = ()
        for name, node in self.keys.items():
            if not isinstance(node, Node):
                raise TypeError(f"Settings: key '{name}' must be declared with Key(...), got {node!r}")

    def _derived(self, keys: Mapping[str, Node], includes: tuple[Delegate, ...] | None = None) -> Settings:
        out = Settings(keys)
        out.includes = self.includes if includes is None else includes
        return out

    def extend(self, **more: Node) -> Settings:
        """These keys plus ``more`` (a subclass's additions; a name given again replaces the old one)."""
        return self._derived({**self.keys, **more})

    def without(self, *names: str) -> Settings:
        """These keys less ``names``."""
        return self._derived({k: v for k, v in self.keys.items() if k not in names})

    def including(self, *delegates: Delegate) -> Settings:
        """These keys plus those the sub-components named by ``delegates`` declare (see the class)."""
        return self._derived(self.keys, self.includes + tuple(delegates))

    def declared(self, ctx: Context) -> tuple[dict[str, tuple[Node, Context]], bool]:
        """Every key this table accepts in ``ctx`` with its node and the context of its reader, and
        whether an unresolvable include leaves the table open."""
        keys = {k: (n, ctx) for k, n in self.keys.items()}
        open_ended = False
        for delegate in self.includes:
            target = delegate.target(ctx)
            if target is UNRESOLVED:
                open_ended = True
            elif target is not None:
                spec, child = target
                if not isinstance(spec, Settings):
                    open_ended = True
                    continue
                more, child_open = spec.declared(child)
                open_ended = open_ended or child_open
                for k, entry in more.items():
                    keys.setdefault(k, entry)
        return keys, open_ended

    def defaults(self) -> dict[str, Any]:
        """``{key: default}`` of the keys that have one (neither ``None`` nor :data:`REQUIRED`)."""
        return {
            k: n.default
            for k, n in self.keys.items()
            if isinstance(n, Key) and n.default is not None and n.default is not REQUIRED
        }

    def check(self, value: Any, path: str, ctx: Context) -> None:
        if not isinstance(value, Mapping):
            raise SettingsError(path, f"must be a table ({ctx.where}), got {type(value).__name__}")
        keys, open_ended = self.declared(ctx)
        for key in value:
            if key not in keys and not open_ended:
                hints = nearest(str(key), keys)
                hint = f"; did you mean '{hints[0]}'? " if hints else ". "
                raise SettingsError(
                    _join(path, key),
                    f"unknown key '{key}' in {ctx.where}{hint}Known keys: {', '.join(sorted(keys))}",
                )
        for key, (node, reader) in keys.items():
            if key in value:
                node.check(value[key], _join(path, key), reader)
            elif isinstance(node, Key) and node.default is REQUIRED:
                raise SettingsError(
                    _join(path, key), f"missing key '{key}' ({node.doc or node.describe()}) in {reader.where}"
                )
        if open_ended:
            for key in value:
                if key not in keys:
                    ctx.unchecked(value[key], _join(path, key))

    def describe(self) -> str:
        return "table"


@dataclass(frozen=True)
class PerStage(Node):
    """An array of tables, one per stage, each checked by ``stage`` (cascade heads:
    ``train_cfg.rcnn = [{...}, {...}, {...}]``). With ``single_ok`` one table for every stage is
    accepted as well."""

    stage: Node
    single_ok: bool = False

    def check(self, value: Any, path: str, ctx: Context) -> None:
        if isinstance(value, Mapping) and self.single_ok:
            self.stage.check(value, path, ctx)
            return
        if not isinstance(value, (list, tuple)):
            raise SettingsError(
                path, f"must be an array of per-stage tables ({ctx.where}), got {type(value).__name__}"
            )
        for i, item in enumerate(value):
            self.stage.check(item, _join(path, str(i)), replace(ctx, stage=i))

    def describe(self) -> str:
        return f"array of {self.stage.describe()}"


@dataclass(frozen=True)
class Delegate(Node):
    """The value is the settings of the owner's sub-component at argument ``component`` (e.g.
    ``"bbox_head"``), checked by that component's declaration for ``phase`` (default: the phase
    being checked; ``"test_cfg"`` for the RPN's training-time proposal settings)."""

    component: str
    phase: str | None = None

    def target(self, ctx: Context) -> Any:
        """``(declaration, context)`` of the sub-component; ``None`` when it is absent,
        :data:`UNRESOLVED` when its class cannot be told or it declares nothing for the phase."""
        phase = self.phase or ctx.phase
        found = ctx.resolve(self.component)
        if found is None or found is UNRESOLVED:
            return found
        cls, source = found
        spec = getattr(cls, SETTINGS_ATTRS[phase], None)
        if not isinstance(spec, Node):
            return UNRESOLVED
        return spec, replace(ctx, owner=cls, source=source, phase=phase, stage=None)

    def check(self, value: Any, path: str, ctx: Context) -> None:
        target = self.target(ctx)
        if target is None or target is UNRESOLVED:
            ctx.unchecked(value, path)
            return
        spec, child = target
        spec.check(value, path, child)

    def describe(self) -> str:
        return f"{self.component}'s settings"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


# -- entry points ----------------------------------------------------------------------------------


def declared_settings(factory: Any) -> dict[str, Node]:
    """``{"train_cfg": node, "test_cfg": node}`` declared by a factory (a class or a function)."""
    out = {}
    for param, attr in SETTINGS_ATTRS.items():
        node = getattr(factory, attr, None)
        if isinstance(node, Node):
            out[param] = node
    return out


def check_settings(
    factory: Any,
    kwargs: Mapping[str, Any],
    where: str = "",
    resolver: Resolver | None = None,
    component: Callable[[Any, str, str], None] | None = None,
    unchecked: Callable[[Any, str], None] | None = None,
) -> None:
    """Check the settings arguments (``train_cfg``, ``test_cfg``) in ``kwargs`` against what
    ``factory`` declares; raise :class:`SettingsError` whose path starts with ``where``.

    ``resolver`` finds the classes of sub-components for :class:`Delegate` (default: built objects
    only); ``component`` / ``unchecked`` are the validator's callbacks (see :class:`Context`).
    """
    owner = factory if isinstance(factory, type) else type(factory)
    base = Context(owner, kwargs, "", resolver or _object_resolver)
    if component is not None:
        base = replace(base, component=component)
    if unchecked is not None:
        base = replace(base, unchecked=unchecked)
    for param, node in declared_settings(factory).items():
        value = kwargs.get(param)
        if value is not None:
            node.check(value, _join(where, param), replace(base, phase=param))


def checked(owner: Any, param: str, value: Any, where: str = "") -> Any:
    """``value`` (a ``train_cfg`` / ``test_cfg`` argument of ``owner``, a class or instance) checked
    against its declaration, as a shallow copy (``dict`` / ``list``); ``None`` stays ``None``.

    For constructors: ``self.train_cfg = checked(self, "train_cfg", train_cfg, where=name)``.
    """
    if value is None:
        return None
    factory = owner if isinstance(owner, type) else type(owner)
    node = declared_settings(factory).get(param)
    if node is not None:
        node.check(value, _join(where, param), Context(factory, owner, param))
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


# -- shared declarations ---------------------------------------------------------------------------

#: the ``nms`` table that :func:`detcore.ops.multiclass_nms` reads (``nms`` or ``soft_nms``)
NMS_SETTINGS = Settings(
    type=Key(str, "nms", doc="'nms' or 'soft_nms'"),
    iou_threshold=Key(float, 0.5, doc="IoU above which the lower-scored box is dropped"),
    iou_thr=Key(float, doc="old spelling of iou_threshold"),
    class_agnostic=Key(bool, False, doc="one NMS over all classes instead of one per class"),
    split_thr=Key(int, doc="accepted for the reference's configs; unused"),
    max_num=Key(int, -1, doc="keep at most this many boxes after NMS"),
    sigma=Key(float, 0.5, doc="soft_nms: Gaussian sigma"),
    min_score=Key(float, 1e-3, doc="soft_nms: drop boxes whose decayed score falls below"),
    method=Key(str, "linear", doc="soft_nms: 'linear', 'gaussian' or 'naive'"),
)
