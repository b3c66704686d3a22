"""The run hooks a config asks for: one built-in hook per hook table, then ``custom_hooks``.

Each table in :data:`HOOK_TABLES` configures one run hook; the table's keys are that hook's
arguments, ``type`` may replace the built-in by any registered run hook and ``priority`` overrides
the hook's default. Every hook is built through the registry (kind ``run_hook``), so unknown keys
are refused with the table's name and the nearest valid key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from detcore.config import Config
from detcore.engine.hook import check_run_hook
from detcore.errors import ConfigError

#: what a table adapter gets: (the table's keys, the whole config, whether intervals count epochs)
Adapter = Callable[[dict[str, Any], Config, bool], "dict[str, Any] | None"]


@dataclass(frozen=True)
class HookTable:
    """A config table that configures one run hook.

    ``adapt`` turns the table into the hook's arguments (``None``: build no hook);
    ``needs_optimizer``: only training runs (with an ``[optimizer]``) get the hook.
    """

    key: str
    hook_type: str
    needs_optimizer: bool = False
    adapt: Adapter | None = None


def _lr_args(table: dict[str, Any], cfg: Config, by_epoch: bool) -> dict[str, Any]:
    """``lr_config`` (and ``momentum_config``) are schedules handed whole to the ParamSchedulerHook."""
    options = {k: table[k] for k in ("priority", "type") if k in table}
    schedule = {k: v for k, v in table.items() if k not in options}
    return {
        "lr_config": schedule,
        "momentum_config": cfg.get("momentum_config"),
        "by_epoch": by_epoch,
        **options,
    }


def _checkpoint_args(table: dict[str, Any], cfg: Config, by_epoch: bool) -> dict[str, Any]:
    """``evaluation.save_best`` (the reference's place for it) is the checkpoint hook's unless it sets one."""
    best = (cfg.get("evaluation") or {}).get("save_best")
    if best and "save_best" not in table:
        table["save_best"] = best
    return table


def _evaluation_args(table: dict[str, Any], cfg: Config, by_epoch: bool) -> dict[str, Any] | None:
    """No evaluation hook without validation data and an evaluator, or with ``enabled = false``."""
    if table.pop("enabled", True) is False:
        return None
    if cfg.get("data.val") is None or cfg.get("evaluator") is None:
        return None
    return table


def _log_args(table: dict[str, Any], cfg: Config, by_epoch: bool) -> dict[str, Any]:
    """The reference's list of logger hooks (``hooks``) is covered by the one LoggerHook."""
    table.pop("hooks", None)
    return table


#: the built-in hook tables, in registration order (the order among hooks of equal priority)
HOOK_TABLES: tuple[HookTable, ...] = (
    HookTable("lr_config", "ParamSchedulerHook", needs_optimizer=True, adapt=_lr_args),
    HookTable("optimizer_config", "OptimizerHook", needs_optimizer=True),
    HookTable("timer_config", "IterTimerHook"),
    HookTable("checkpoint_config", "CheckpointHook", adapt=_checkpoint_args),
    HookTable("evaluation", "EvalHook", adapt=_evaluation_args),
    HookTable("log_config", "LoggerHook", adapt=_log_args),
)


def build_run_hooks(cfg: Config, by_epoch: bool, with_optimizer: bool = True) -> list[Any]:
    """The hooks of a run, in registration order: the :data:`HOOK_TABLES` hooks, then ``custom_hooks``.

    ``by_epoch``: whether the training loop counts epochs (the LR schedule's default unit);
    ``with_optimizer``: whether the run trains (else the optimizer and LR hooks are left out).
    Call order is decided by priority when the hooks are registered on the run's hook manager.
    """
    from detcore.registry import build

    hooks: list[Any] = []
    for spec in HOOK_TABLES:
        if spec.needs_optimizer and not with_optimizer:
            continue
        table = cfg.get(spec.key)
        if table is not None and not isinstance(table, Mapping):
            raise ConfigError(f"{cfg.source_of(spec.key)}: {spec.key} must be a table")
        args: dict[str, Any] | None = dict(table or {})
        if spec.adapt is not None:
            args = spec.adapt(args, cfg, by_epoch)
        if args is None:
            continue
        args.setdefault("type", spec.hook_type)
        hooks.append(build("run_hook", args, where=spec.key))
    custom = cfg.get("custom_hooks") or []
    if not isinstance(custom, list):
        raise ConfigError(f"{cfg.source_of('custom_hooks')}: custom_hooks must be an array of hook tables")
    for i, table in enumerate(custom):
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{cfg.source_of('custom_hooks')}: custom_hooks.{i} must be a table with a 'type'"
            )
        hook = build("run_hook", table, where=f"custom_hooks.{i}")
        try:
            check_run_hook(hook)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"custom_hooks.{i}: '{table.get('type')}': {exc}") from None
        hooks.append(hook)
    return hooks
