"""The optimizer step: backward (through the AMP gradient scaler), accumulation, clipping, NaN guard."""

from __future__ import annotations

import math
from typing import Any

import torch

from detcore.engine.hook import Hook


class NonFiniteLossError(RuntimeError):
    """The total loss of an iteration was NaN or infinite."""


class OptimizerHook(Hook):
    """Steps the optimizer in ``after_train_iter``.

    - ``accumulate``: gradients of this many iterations are summed (each loss divided by it) before
      one step; the last iteration of the run always steps.
    - ``grad_clip = {max_norm = .., norm_type = 2}``: clip the global gradient norm (logged as ``grad_norm``).
    - ``nonfinite``: ``"stop"`` raises :class:`NonFiniteLossError` naming the iteration, the loss
      terms and the last checkpoint; ``"skip"`` drops the iteration's gradients and goes on.
    """

    default_priority = "HIGH"

    def __init__(
        self,
        grad_clip: dict | None = None,
        accumulate: int = 1,
        nonfinite: str = "stop",
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"optimizer_config.accumulate must be an int >= 1, got {accumulate!r}")
        if nonfinite not in ("stop", "skip"):
            raise ValueError(f"optimizer_config.nonfinite must be 'stop' or 'skip', got {nonfinite!r}")
        if grad_clip is not None and "max_norm" not in grad_clip:
            raise ValueError(f"optimizer_config.grad_clip needs max_norm, got {grad_clip!r}")
        self.grad_clip = dict(grad_clip) if grad_clip else None
        self.accumulate = accumulate
        self.nonfinite = nonfinite
        self.skipped = 0

    def after_train_iter(self, runner: Any, outputs: dict) -> None:
        loss: torch.Tensor = outputs["loss"]
        optimizer = runner.optimizer
        total = outputs["log_vars"]["loss"] if "loss" in outputs["log_vars"] else float(loss.detach())
        if not math.isfinite(total):
            terms = ", ".join(f"{k}={v:.4g}" for k, v in outputs["log_vars"].items())
            if self.nonfinite == "skip":
                self.skipped += 1
                optimizer.zero_grad(set_to_none=True)
                outputs["stepped"] = False
                runner.logger.warning(
                    f"non-finite loss at iteration {runner.iter + 1} ({terms}); step skipped"
                )
                return
            last = runner.last_checkpoint or "none written yet"
            raise NonFiniteLossError(
                f"non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {terms}. "
                f"Last good checkpoint: {last}. Lower the learning rate, add warm-up or grad_clip, or set "
                'optimizer_config.nonfinite = "skip".'
            )
        scaler = runner.grad_scaler
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        if scaler is not None:
            scaler.scale(scaled).backward()
        else:
            scaled.backward()
        step = (runner.iter + 1) % self.accumulate == 0 or runner.iter + 1 >= runner.max_iters
        outputs["stepped"] = step
        if not step:
            return
        if self.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if params:
                norm = torch.nn.utils.clip_grad_norm_(params, **self.grad_clip)
                outputs["log_vars"]["grad_norm"] = float(norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        runner.mark_stepped()
