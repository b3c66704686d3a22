"""Exponential moving average of the model's weights, used for validation and saved in checkpoints."""

from __future__ import annotations

import math
from typing import Any

import torch

from detcore.engine.hook import Hook


class EMAHook(Hook):
    """``ema = (1 - m) * ema + m * weight`` after every ``interval``-th optimizer step.

    With ``warm_up > 0`` the momentum starts near 1 and decays to ``momentum`` as
    ``m_t = (1 - momentum) * exp(-(1 + t) / warm_up) + momentum`` (t: optimizer steps). Buffers are
    copied (``update_buffers = false``) or averaged like parameters. Validation and test passes run
    with the EMA weights; checkpoints keep the raw weights in ``state_dict`` and the average in
    ``ema_state_dict``.
    """

    default_priority = 49

    def __init__(
        self,
        momentum: float = 0.0002,
        interval: int = 1,
        warm_up: int = 0,
        update_buffers: bool = False,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        if not 0 < momentum <= 1:
            raise ValueError(f"EMAHook.momentum must be in (0, 1], got {momentum}")
        self.momentum = momentum
        self.interval = interval
        self.warm_up = warm_up
        self.update_buffers = update_buffers
        self.ema: dict[str, torch.Tensor] | None = None
        self.steps = 0
        self._swapped = False

    def _model_state(self, runner: Any) -> dict[str, torch.Tensor]:
        return runner.unwrapped_model.state_dict(keep_vars=False)

    def before_run(self, runner: Any) -> None:
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self._model_state(runner).items()}

    def current_momentum(self) -> float:
        if self.warm_up > 0:
            return (1 - self.momentum) * math.exp(-(1 + self.steps) / self.warm_up) + self.momentum
        return self.momentum

    @torch.no_grad()
    def after_train_iter(self, runner: Any, outputs: dict) -> None:
        if not outputs.get("stepped", True):
            return
        self.steps += 1
        if self.steps % self.interval:
            return
        m = self.current_momentum()
        params = dict(runner.unwrapped_model.named_parameters())
        for key, value in self._model_state(runner).items():
            avg = self.ema[key]
            if not value.dtype.is_floating_point or (key not in params and not self.update_buffers):
                avg.copy_(value)
            else:
                avg.lerp_(value.detach(), m)

    @torch.no_grad()
    def _swap(self, runner: Any) -> None:
        if self.ema is None:
            return
        for key, value in self._model_state(runner).items():
            tmp = value.detach().clone()
            value.copy_(self.ema[key])
            self.ema[key].copy_(tmp)
        self._swapped = not self._swapped

    def before_val_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_val_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def before_test_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_test_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def before_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema_state_dict"] = {k: v.detach().cpu().clone() for k, v in self.ema.items()}
            checkpoint["meta"]["ema_steps"] = self.steps

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint.get("ema_state_dict")
        if state is None:
            runner.logger.warning(
                "EMAHook: the checkpoint has no ema_state_dict; the average restarts from the weights"
            )
            return
        device_state = self._model_state(runner)
        self.ema = {
            k: state[k].to(device_state[k].device).clone() if k in state else v.detach().clone()
            for k, v in device_state.items()
        }
        self.steps = int(checkpoint.get("meta", {}).get("ema_steps", 0))
