"""The training engine: the Runner, run hooks, optimizers, schedules and checkpoints."""

from detcore.engine.checkpoint import (
    LoadReport,
    extract_state_dict,
    find_latest,
    load_checkpoint_file,
    load_weights,
    save_atomic,
)
from detcore.engine.hook import PRIORITIES, Hook, RunHookManager, get_priority
from detcore.engine.hooks import (
    CheckpointHook,
    EMAHook,
    EvalHook,
    IterTimerHook,
    LoggerHook,
    NonFiniteLossError,
    OptimizerHook,
    ParamSchedulerHook,
)
from detcore.engine.optim import build_optimizer, param_groups
from detcore.engine.runner import Runner, parse_losses
from detcore.engine.seed import get_rng_state, set_random_seed, set_rng_state

__all__ = [
    "PRIORITIES",
    "CheckpointHook",
    "EMAHook",
    "EvalHook",
    "Hook",
    "IterTimerHook",
    "LoadReport",
    "LoggerHook",
    "NonFiniteLossError",
    "OptimizerHook",
    "ParamSchedulerHook",
    "Runner",
    "RunHookManager",
    "build_optimizer",
    "extract_state_dict",
    "find_latest",
    "get_priority",
    "get_rng_state",
    "load_checkpoint_file",
    "load_weights",
    "param_groups",
    "parse_losses",
    "save_atomic",
    "set_random_seed",
    "set_rng_state",
]
