"""The engine's built-in run hooks, and the builder that makes a run's hooks from its config."""

from detcore.engine.hooks.builder import HOOK_TABLES, HookTable, build_run_hooks
from detcore.engine.hooks.checkpoint import CheckpointHook
from detcore.engine.hooks.ema import EMAHook
from detcore.engine.hooks.evaluation import EvalHook
from detcore.engine.hooks.logger import LoggerHook
from detcore.engine.hooks.optimizer import NonFiniteLossError, OptimizerHook
from detcore.engine.hooks.param_scheduler import ParamSchedulerHook
from detcore.engine.hooks.timer import IterTimerHook
from detcore.engine.hooks.trackers import MlflowLoggerHook, WandbLoggerHook

BUILTIN_HOOKS = {
    "ParamSchedulerHook": ParamSchedulerHook,
    "OptimizerHook": OptimizerHook,
    "IterTimerHook": IterTimerHook,
    "CheckpointHook": CheckpointHook,
    "EvalHook": EvalHook,
    "LoggerHook": LoggerHook,
    "EMAHook": EMAHook,
    "MlflowLoggerHook": MlflowLoggerHook,
    "WandbLoggerHook": WandbLoggerHook,
}

__all__ = [
    "BUILTIN_HOOKS",
    "HOOK_TABLES",
    "HookTable",
    "build_run_hooks",
    "CheckpointHook",
    "EMAHook",
    "EvalHook",
    "IterTimerHook",
    "LoggerHook",
    "MlflowLoggerHook",
    "NonFiniteLossError",
    "OptimizerHook",
    "ParamSchedulerHook",
    "WandbLoggerHook",
]
