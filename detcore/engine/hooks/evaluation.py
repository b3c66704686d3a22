"""Validation during training, every ``interval`` epochs or iterations."""

from __future__ import annotations

from typing import Any

from detcore.engine.hook import Hook


class EvalHook(Hook):
    """Runs ``runner.val()`` every ``interval`` epochs (``by_epoch``) or iterations, from ``start`` on.

    The final epoch / iteration is always evaluated, so ``runner.train()`` returns final metrics.
    """

    default_priority = "LOW"

    def __init__(
        self,
        interval: int = 1,
        by_epoch: bool | None = None,
        start: int | None = None,
        save_best: str | None = None,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"evaluation.interval must be an int >= 1, got {interval!r}")
        self.interval = interval
        self.by_epoch = by_epoch
        self.start = start
        self.save_best = save_best  # read by the runner, which hands it to the CheckpointHook

    def before_run(self, runner: Any) -> None:
        if self.by_epoch is None:
            self.by_epoch = runner.by_epoch

    def _due(self, done: int, last: int) -> bool:
        if done >= last:
            return True
        if self.start is not None:
            return done >= self.start and (done - self.start) % self.interval == 0
        return done % self.interval == 0

    def after_train_epoch(self, runner: Any) -> None:
        if self.by_epoch and self._due(runner.epoch + 1, runner.max_epochs):
            runner.val()

    def after_train_iter(self, runner: Any) -> None:
        if not self.by_epoch and self._due(runner.iter + 1, runner.max_iters):
            runner.val()
