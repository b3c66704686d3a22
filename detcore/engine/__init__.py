"""The training engine: the Runner, its loops, run hooks, optimizers, schedules and checkpoints."""

from detcore.engine.checkpoint import (
    LoadReport,
    RunState,
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
from detcore.engine.hooks.builder import build_run_hooks
from detcore.engine.loops import (
    BaseLoop,
    BaseTrainLoop,
    EpochBasedTrainLoop,
    EvalLoop,
    IterBasedTrainLoop,
    TestLoop,
    ValLoop,
    parse_losses,
)
from detcore.engine.optim import build_optimizer, param_groups
from detcore.engine.runner import Runner
from detcore.engine.seed import get_rng_state, set_random_seed, set_rng_state

__all__ = [
    "PRIORITIES",
    "BaseLoop",
    "BaseTrainLoop",
    "EpochBasedTrainLoop",
    "EvalLoop",
    "IterBasedTrainLoop",
    "RunState",
    "TestLoop",
    "ValLoop",
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
    "build_run_hooks",
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
