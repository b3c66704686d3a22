"""Sets each parameter group's learning rate (and momentum) before every training iteration."""

from __future__ import annotations

from typing import Any, Mapping

from detcore.engine.hook import Hook
from detcore.engine.schedule import ParamSchedule


def _momentum_key(group: Mapping[str, Any]) -> str | None:
    if "momentum" in group:
        return "momentum"
    if "betas" in group:
        return "betas"
    return None


class ParamSchedulerHook(Hook):
    """Applies ``lr_config`` (and ``momentum_config``) schedules to every optimizer group.

    Each group's base value is its learning rate when training starts (``initial_lr``, which
    already includes the group's ``lr_mult``) and is kept in checkpoints. The schedule is a pure
    function of (epoch, iteration), so resuming needs only the base values.
    """

    default_priority = "VERY_HIGH"

    def __init__(
        self,
        lr_config: Mapping[str, Any] | None = None,
        momentum_config: Mapping[str, Any] | None = None,
        by_epoch: bool = True,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        self.lr = ParamSchedule(lr_config or {}, by_epoch, "lr_config")
        self.momentum = (
            ParamSchedule(momentum_config, by_epoch, "momentum_config") if momentum_config else None
        )

    def before_run(self, runner: Any) -> None:
        for group in runner.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            key = _momentum_key(group)
            if self.momentum is not None and key is not None:
                group.setdefault("initial_momentum", group[key][0] if key == "betas" else group[key])

    def before_train_iter(self, runner: Any) -> None:
        self.apply(runner, runner.epoch, runner.iter)

    def apply(self, runner: Any, epoch: int, iter_: int) -> None:
        args = (epoch, iter_, runner.max_epochs, runner.max_iters, runner.iters_per_epoch)
        for group in runner.optimizer.param_groups:
            group["lr"] = self.lr.value(group["initial_lr"], *args)
            if self.momentum is not None and "initial_momentum" in group:
                value = self.momentum.value(group["initial_momentum"], *args)
                if "betas" in group:
                    group["betas"] = (value, *tuple(group["betas"])[1:])
                else:
                    group["momentum"] = value

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Base values travel in the optimizer's groups (``initial_lr``); nothing else to restore."""
