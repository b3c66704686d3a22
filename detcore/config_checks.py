"""Checks of a merged config beyond its component tables (called by :func:`detcore.config.validate_config`).

- Top-level keys: every key must be one the kernel reads (:data:`TOP_LEVEL_KEYS`); an unknown one
  (``[optimzer]``) is an error with the nearest known key.
- ``[data]``, ``[amp]``, ``[auto_scale_lr]``: declared with :mod:`detcore.settings` (types, ranges,
  choices), so ``[data] batch_sise`` is refused with ``did you mean 'batch_size'?``.
- Engine tables: the run hooks (``lr_config``, ``optimizer_config``, ``checkpoint_config``,
  ``log_config``, ``evaluation``, ``custom_hooks``) and the loops (``runner``, ``val_loop``,
  ``test_loop``) are built as a run would build them (cheap objects: no model, no data), so whatever
  their constructors refuse is refused here first, with the file and key path.
- Argument types declared by a factory's signature (``int``, ``float``, ``bool``, ``str``,
  ``Literal[...]``, optional and union forms, arrays and tables) are checked for every component table.
- A schedule step past the end of training is a :class:`~detcore.errors.ConfigWarning` naming the key.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from detcore.errors import ConfigError, ConfigWarning, DetcoreError, config_sources, describe, nearest
from detcore.settings import Context, Key, Settings, SettingsError

#: every top-level key the kernel reads, with what it is
TOP_LEVEL_KEYS: dict[str, str] = {
    "plugins": "plugins the config needs",
    "work_dir": "logs and checkpoints",
    "seed": "random seed",
    "deterministic": "deterministic algorithms",
    "load_from": "weights to start from",
    "device": "cpu, cuda or cuda:N",
    "dist_backend": "torch.distributed backend",
    "sync_bn": "SyncBatchNorm in distributed runs",
    "find_unused_parameters": "DistributedDataParallel option",
    "classes": "class names",
    "model": "the detector",
    "data": "datasets and loaders",
    "evaluator": "the metric",
    "val_evaluator": "the validation metric",
    "test_evaluator": "the test metric",
    "optimizer": "the optimizer",
    "optimizer_config": "gradient clipping, accumulation",
    "lr_config": "learning-rate schedule",
    "momentum_config": "momentum schedule",
    "runner": "the training loop",
    "val_loop": "the validation loop",
    "test_loop": "the test loop",
    "checkpoint_config": "checkpoints",
    "log_config": "logging",
    "timer_config": "iteration timer",
    "evaluation": "validation during training",
    "amp": "mixed precision",
    "precision": "fp32 or bf16 compute (inference, evaluation and training)",
    "custom_hooks": "extra run hooks",
    "auto_scale_lr": "linear learning-rate scaling",
}


@dataclass(frozen=True)
class Bounded(Key):
    """A :class:`Key` with a lower bound (``low``, inclusive) and/or a set of ``choices``."""

    low: float | None = None
    choices: tuple[Any, ...] = ()

    def check(self, value: Any, path: str, ctx: Context) -> None:
        super().check(value, path, ctx)
        if value is None:
            return
        if self.low is not None and value < self.low:
            raise SettingsError(path, f"must be >= {self.low:g} ({ctx.where}), got {value!r}")
        if self.choices and value not in self.choices:
            raise SettingsError(
                path, f"must be one of {', '.join(map(repr, self.choices))} ({ctx.where}), got {value!r}"
            )


_TABLE = Key((dict, list), doc="a dataset table (checked as a dataset)")

#: the keys of ``[data]`` (the runner's data loaders; the datasets are component tables)
DATA_SETTINGS = Settings(
    train=_TABLE,
    val=_TABLE,
    test=_TABLE,
    batch_size=Bounded(int, 2, low=1, doc="training images per process"),
    val_batch_size=Bounded(int, 1, low=1),
    test_batch_size=Bounded(int, 1, low=1),
    num_workers=Bounded(int, 2, low=0, doc="loader worker processes"),
    drop_last=Key(bool, False),
    group_by_aspect_ratio=Key(bool, True),
    pad_size_divisor=Bounded(int, 1, low=1),
    persistent_workers=Key(bool, False),
)
AMP_SETTINGS = Settings(
    enabled=Key(bool, False), dtype=Bounded(str, choices=("float16", "bfloat16"))
)
AUTO_SCALE_LR_SETTINGS = Settings(enable=Key(bool, False), base_batch_size=Bounded(int, 16, low=1))
SCALAR_KEYS = Settings(
    plugins=Key(list),
    work_dir=Key(str),
    seed=Bounded(int, low=0),
    deterministic=Key(bool),
    load_from=Key(str),
    device=Key(str),
    dist_backend=Key(str),
    sync_bn=Key(bool),
    find_unused_parameters=Key(bool),
    classes=Key(list),
    custom_hooks=Key(list),
    precision=Bounded(str, choices=("fp32", "bf16")),
)

TABLE_SETTINGS: dict[str, Settings] = {
    "data": DATA_SETTINGS,
    "amp": AMP_SETTINGS,
    "auto_scale_lr": AUTO_SCALE_LR_SETTINGS,
}


class _Config:
    """The config as the owner of its settings, for messages (``"config's data"``)."""


_Config.__name__ = "config"


def check_config_tables(cfg: Any, registry: Any) -> None:
    """Top-level keys, the declared tables and the engine tables of ``cfg`` (see the module doc)."""
    for key in cfg.data:
        if key not in TOP_LEVEL_KEYS:
            hints = nearest(str(key), TOP_LEVEL_KEYS)
            hint = f"; did you mean '{hints[0]}'? " if hints else ". "
            raise ConfigError(
                f"{source_of_table(cfg, key)}: {key}: unknown top-level key{hint}"
                f"Known keys: {', '.join(TOP_LEVEL_KEYS)}"
            )
    for key, spec in TABLE_SETTINGS.items():
        _check(spec, cfg.get(key), key, cfg)
    scalars = {k: v for k, v in cfg.data.items() if k in SCALAR_KEYS.keys}
    _check(SCALAR_KEYS, scalars, "", cfg)
    by_epoch = _check_loops(cfg, registry)
    _check_hooks(cfg, by_epoch)
    schedule_warnings(cfg, by_epoch)


def source_of_table(cfg: Any, key: str) -> str:
    """The file or override that set ``key`` or, for a table only its keys were set for (``--set
    optimzer.lr=1``), the first of those."""
    if key in cfg.provenance:
        return cfg.provenance[key]
    inner = next((v for k, v in cfg.provenance.items() if k.startswith(key + ".")), None)
    return inner or cfg.source_of(key)


def _check(spec: Settings, value: Any, path: str, cfg: Any) -> None:
    if value is None:
        return
    ctx = Context(_Config, value, path or "top level")
    try:
        spec.check(value, path, ctx)
    except SettingsError as exc:
        raise ConfigError(f"{cfg.source_of(exc.path)}: {exc.path}: {exc.reason}") from None


def _engine_error(exc: BaseException, where: str, cfg: Any) -> ConfigError:
    if isinstance(exc, DetcoreError):
        message = describe(exc)
        path = message.split(" ", 1)[0].rstrip(":")
        if path.split(".")[0] in TOP_LEVEL_KEYS and path.split(".")[0] in cfg:  # "lr_config.warmup must ..."
            return ConfigError(f"{cfg.source_of(path)}: {message}")
        return exc if isinstance(exc, ConfigError) else ConfigError(message)
    # a constructor's own check (ValueError("interval must be an int >= 1, got 0")): its text is the reason
    keyed = isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str)
    text = exc.args[0] if keyed else str(exc)
    return ConfigError(f"{getattr(exc, 'detcore_where', None) or where}: {text or type(exc).__name__}")


def _check_loops(cfg: Any, registry: Any) -> bool:
    """Build the loop tables with no runner (their constructors only check and store); whether the
    training loop counts epochs."""
    from detcore.engine.loops import IGNORED_KEYS, LOOP_ALIASES
    from detcore.engine.runner import DEFAULT_LOOPS

    by_epoch = True
    for key, default in DEFAULT_LOOPS.items():
        table = cfg.get(key) or default
        where = f"{cfg.source_of(key)}: {key}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: must be a table with a 'type', got {type(table).__name__}")
        table = dict(table)
        name = table.setdefault("type", default["type"])
        if not isinstance(name, str):
            raise ConfigError(f"{where}.type: a loop name is expected, got {type(name).__name__} {name!r}")
        table["type"] = LOOP_ALIASES.get(name, name)
        for ignored in IGNORED_KEYS.get(table["type"], ()):
            table.pop(ignored, None)
        try:
            loop = _build(cfg, _offering(registry, "loop", table["type"]), "loop", table, key, runner=None)
        except AttributeError:  # a loop whose constructor reads the runner: checked when the run builds it
            continue
        except Exception as exc:  # noqa: BLE001 - turned into a located config error
            raise _engine_error(exc, where, cfg) from None
        if key == "runner":
            by_epoch = bool(getattr(loop, "by_epoch", True))
    return by_epoch


def _offering(registry: Any, kind: str, name: str) -> Any:
    """``registry`` if it offers ``name``, else the process-wide registry (a test's registry of fake
    plugins lacks the engine's built-in loops)."""
    from detcore.errors import ComponentError
    from detcore.registry import get_registry

    try:
        registry.get(kind, name)
    except ComponentError:
        return get_registry()
    return registry


def _build(cfg: Any, registry: Any, kind: str, table: Mapping[str, Any], where: str, **defaults: Any) -> Any:
    with config_sources(cfg.source_of):
        return registry.build(kind, table, where=where, **defaults)


def _check_hooks(cfg: Any, by_epoch: bool) -> None:
    """Build the run hooks of the hook tables and ``custom_hooks`` (small objects; nothing runs)."""
    from detcore.engine.hooks.builder import build_run_hooks

    try:
        with config_sources(cfg.source_of):
            build_run_hooks(cfg, by_epoch=by_epoch, with_optimizer=cfg.get("optimizer") is not None)
    except Exception as exc:  # noqa: BLE001 - turned into a located config error
        raise _engine_error(exc, cfg.filename or "<config>", cfg) from None


def schedule_warnings(cfg: Any, by_epoch: bool) -> list[str]:
    """Warn (:class:`ConfigWarning`) about ``lr_config.step`` milestones at or past the end of training,
    which never take effect; returns the messages."""
    lr = cfg.get("lr_config")
    if not isinstance(lr, Mapping):
        return []
    schedule_by_epoch = lr.get("by_epoch", by_epoch)
    limit_key = "runner.max_epochs" if schedule_by_epoch else "runner.max_iters"
    limit = cfg.get(limit_key)
    if limit is None and limit_key == "runner.max_epochs":
        from detcore.engine.runner import DEFAULT_LOOPS

        limit = DEFAULT_LOOPS["runner"].get("max_epochs") if by_epoch else None
    steps = lr.get("step", lr.get("milestones"))
    if not isinstance(limit, int) or not isinstance(steps, list):
        return []
    unit = "epoch" if schedule_by_epoch else "iteration"
    out = []
    key = "lr_config.step" if "step" in lr else "lr_config.milestones"
    for i, step in enumerate(steps):
        if isinstance(step, int) and not isinstance(step, bool) and step >= limit:
            message = (
                f"{cfg.source_of(key)}: {key}.{i}: step at {unit} {step} is at or past the end of training "
                f"({limit_key} = {limit}); it never takes effect"
            )
            warnings.warn(message, ConfigWarning, stacklevel=2)
            out.append(message)
    return out


# -- argument types declared by factory signatures -------------------------------------------------------


@functools.cache
def declared_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """``{parameter: type hint}`` of a factory (a class: its ``__init__`` along the MRO), resolved where
    possible; hints that cannot be resolved are left out."""
    targets = (
        [c.__init__ for c in inspect.getmro(factory) if "__init__" in vars(c)]
        if inspect.isclass(factory)
        else [factory]
    )
    hints: dict[str, Any] = {}
    for target in targets:
        if target is object.__init__:
            break
        try:
            found = typing.get_type_hints(target)
        except Exception:  # noqa: BLE001 - a forward reference or a C function: resolve one by one
            found = {}
            try:
                params = inspect.signature(target).parameters
            except (TypeError, ValueError):
                continue
            namespace = getattr(target, "__globals__", {})
            for name, p in params.items():
                ann = p.annotation
                if isinstance(ann, str):
                    try:
                        ann = eval(ann, dict(namespace), {})  # noqa: S307 - the factory's own annotation
                    except Exception:  # noqa: BLE001
                        continue
                if ann is not inspect.Parameter.empty:
                    found[name] = ann
        for name, hint in found.items():
            hints.setdefault(name, hint)
    hints.pop("return", None)
    return hints


def check_value_types(factory: Callable[..., Any], args: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(key, reason)`` for the first argument whose value does not fit the factory's type hint, else
    ``None``. Component tables (``{type = ...}``) and hints this check does not know pass."""
    hints = declared_types(factory)
    for key, value in args.items():
        hint = hints.get(key)
        if hint is None or value is None and _allows_none(hint):
            continue
        if _fits(value, hint) is False:
            return key, f"expects {_name(hint)}, got {type(value).__name__} {value!r}"
    return None


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or _is_union(hint) and type(None) in typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union or isinstance(hint, types.UnionType)


def _fits(value: Any, hint: Any) -> bool | None:
    """True / False where the hint says; None where it cannot tell (then the value passes)."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return None
    if _is_union(hint):
        results = [_fits(value, h) for h in typing.get_args(hint)]
        return True if any(r is not False for r in results) else False
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    container = origin or hint
    if container in (list, tuple, Sequence, typing.Sequence) or container is typing.List:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return False if not isinstance(value, Mapping) else None
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if container is tuple and len(args) > 1 and Ellipsis not in typing.get_args(hint):
            if len(value) != len(args):
                return False
            return False if any(_fits(v, a) is False for v, a in zip(value, args)) else True
        if len(args) == 1:
            return False if any(_fits(v, args[0]) is False for v in value) else True
        return True
    if container in (dict, Mapping, typing.Mapping) or container is typing.Dict:
        return isinstance(value, Mapping)
    return None  # classes, callables, protocols: a config value may be a table that builds one


def _name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")
