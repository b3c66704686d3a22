"""Learning-rate and momentum schedules with warm-up.

A schedule maps a base value and the training progress to the value at that point:
``schedule.value(base, progress, max_progress)``. Progress counts epochs when the schedule is
``by_epoch`` (epoch-based runs; the value changes at epoch boundaries) and iterations otherwise.

Warm-up is by iterations and multiplies the scheduled value ``v`` at iteration ``i < warmup_iters``:

- ``linear``: ``v * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio))``
- ``constant``: ``v * warmup_ratio``
- ``exp``: ``v * warmup_ratio ** (1 - i / warmup_iters)``
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Mapping

from detcore.errors import ConfigError


class Schedule:
    """Base class: ``value(base, progress, max_progress)``; ``min_lr``/``min_lr_ratio``: floor or target."""

    def __init__(self, min_lr: float | None = None, min_lr_ratio: float | None = None) -> None:
        if min_lr is not None and min_lr_ratio is not None:
            raise ConfigError("lr_config: give min_lr or min_lr_ratio, not both")
        self.min_lr = min_lr
        self.min_lr_ratio = min_lr_ratio

    def target(self, base: float) -> float:
        if self.min_lr_ratio is not None:
            return base * self.min_lr_ratio
        return self.min_lr if self.min_lr is not None else 0.0

    def value(self, base: float, progress: int, max_progress: int) -> float:
        raise NotImplementedError


class StepLR(Schedule):
    """``base * gamma ** k`` where ``k`` counts the milestones in ``step`` already reached.

    ``step`` is a list of milestones, or an int (a milestone every ``step`` units). ``min_lr`` is a floor.
    """

    def __init__(
        self,
        step: int | list[int],
        gamma: float = 0.1,
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
    ) -> None:
        super().__init__(min_lr, min_lr_ratio)
        if isinstance(step, int):
            if step <= 0:
                raise ConfigError(f"lr_config.step must be positive, got {step}")
        elif not (isinstance(step, list) and all(isinstance(s, int) for s in step) and step == sorted(step)):
            raise ConfigError(f"lr_config.step must be an int or an increasing list of ints, got {step!r}")
        self.step = step
        self.gamma = gamma

    def value(self, base: float, progress: int, max_progress: int) -> float:
        k = progress // self.step if isinstance(self.step, int) else bisect_right(self.step, progress)
        v = base * self.gamma**k
        if self.min_lr is not None or self.min_lr_ratio is not None:
            v = max(v, self.target(base))
        return v


class MultiStepLR(StepLR):
    """:class:`StepLR` with a list of milestones (``milestones`` or ``step``)."""

    def __init__(
        self,
        milestones: list[int] | None = None,
        gamma: float = 0.1,
        step: list[int] | None = None,
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
    ) -> None:
        steps = milestones if milestones is not None else step
        if not isinstance(steps, list):
            raise ConfigError(f"lr_config: multistep needs a list of milestones, got {steps!r}")
        super().__init__(steps, gamma, min_lr, min_lr_ratio)


class CosineAnnealingLR(Schedule):
    """``target + (base - target) * (1 + cos(pi * progress / max_progress)) / 2``."""

    def value(self, base: float, progress: int, max_progress: int) -> float:
        target = self.target(base)
        t = min(progress / max(max_progress, 1), 1.0)
        return target + (base - target) * (1 + math.cos(math.pi * t)) / 2


class PolyLR(Schedule):
    """``(base - min_lr) * (1 - progress / max_progress) ** power + min_lr``."""

    def __init__(
        self, power: float = 1.0, min_lr: float | None = None, min_lr_ratio: float | None = None
    ) -> None:
        super().__init__(min_lr, min_lr_ratio)
        self.power = power

    def value(self, base: float, progress: int, max_progress: int) -> float:
        target = self.target(base)
        t = min(progress / max(max_progress, 1), 1.0)
        return (base - target) * (1 - t) ** self.power + target


class FixedLR(Schedule):
    """The base value throughout (warm-up still applies)."""

    def value(self, base: float, progress: int, max_progress: int) -> float:
        return base


SCHEDULES = {
    "StepLR": StepLR,
    "MultiStepLR": MultiStepLR,
    "CosineAnnealingLR": CosineAnnealingLR,
    "PolyLR": PolyLR,
    "FixedLR": FixedLR,
}

#: ``lr_config.policy`` spellings -> registered schedule names.
POLICY_ALIASES = {
    "step": "StepLR",
    "multistep": "MultiStepLR",
    "cosine": "CosineAnnealingLR",
    "cosineannealing": "CosineAnnealingLR",
    "poly": "PolyLR",
    "fixed": "FixedLR",
}

WARMUPS = ("linear", "constant", "exp")


def warmup_factor(kind: str | None, cur_iter: int, warmup_iters: int, warmup_ratio: float) -> float:
    """The factor applied to the scheduled value at iteration ``cur_iter`` (1 after warm-up)."""
    if not kind or cur_iter >= warmup_iters:
        return 1.0
    if kind == "linear":
        return 1 - (1 - cur_iter / warmup_iters) * (1 - warmup_ratio)
    if kind == "constant":
        return warmup_ratio
    if kind == "exp":
        return warmup_ratio ** (1 - cur_iter / warmup_iters)
    raise ConfigError(f"lr_config.warmup must be one of {WARMUPS}, got {kind!r}")


class ParamSchedule:
    """A schedule plus warm-up for one optimizer field (``lr`` or ``momentum``), from a config table.

    Table keys: ``policy`` (a name of :data:`POLICY_ALIASES` or a registered scheduler), ``by_epoch``,
    ``warmup``, ``warmup_iters``, ``warmup_ratio``, ``warmup_by_epoch`` (warm-up length in epochs);
    every other key goes to the schedule (``step``, ``gamma``, ``min_lr``, ``power``, ...).
    """

    def __init__(self, cfg: Mapping[str, Any], default_by_epoch: bool, where: str = "lr_config") -> None:
        from detcore.registry import get_registry

        args = {k: v for k, v in cfg.items() if k != "priority"}
        policy = str(args.pop("policy", "fixed"))
        name = POLICY_ALIASES.get(policy.lower().replace("_", ""), policy)
        self.by_epoch = bool(args.pop("by_epoch", default_by_epoch))
        self.warmup = args.pop("warmup", None) or None
        self.warmup_iters = int(args.pop("warmup_iters", 0))
        self.warmup_ratio = float(args.pop("warmup_ratio", 0.1))
        self.warmup_by_epoch = bool(args.pop("warmup_by_epoch", False))
        if self.warmup is not None and self.warmup not in WARMUPS:
            raise ConfigError(f"{where}.warmup must be one of {WARMUPS}, got {self.warmup!r}")
        if self.warmup is not None and self.warmup_iters <= 0:
            raise ConfigError(f"{where}.warmup_iters must be positive when warmup is set")
        self.schedule = get_registry().build("scheduler", {"type": name, **args}, where=where)

    def value(
        self,
        base: float,
        epoch: int,
        iter_: int,
        max_epochs: int | None,
        max_iters: int,
        iters_per_epoch: int | None,
    ) -> float:
        """The value at the start of iteration ``iter_`` (0-based) in epoch ``epoch``."""
        if self.by_epoch:
            if max_epochs is None:
                raise ConfigError("a by_epoch schedule needs an epoch-based runner (set by_epoch = false)")
            v = self.schedule.value(base, epoch, max_epochs)
        else:
            v = self.schedule.value(base, iter_, max_iters)
        warmup_iters = self.warmup_iters
        if self.warmup_by_epoch and iters_per_epoch:
            warmup_iters = self.warmup_iters * iters_per_epoch
        return v * warmup_factor(self.warmup, iter_, warmup_iters, self.warmup_ratio)
