"""Periodic checkpoints, a bounded number kept, and the best checkpoint by a validation metric."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from detcore.engine.hook import Hook


class CheckpointHook(Hook):
    """Saves ``epoch_N.pth`` (``by_epoch``) or ``iter_N.pth`` every ``interval`` and at the end.

    - ``max_keep_ckpts``: keep only the newest N periodic checkpoints (``-1``: all);
    - ``save_best``: a metric name (or ``"auto"``: the first metric) whose best value so far is kept
      as ``best_<metric>_<epoch|iter>_N.pth``; ``rule`` is ``"greater"`` or ``"less"`` (default:
      ``"less"`` for names containing ``loss``, else ``"greater"``).
    """

    default_priority = "NORMAL"

    def __init__(
        self,
        interval: int = 1,
        by_epoch: bool | None = None,
        max_keep_ckpts: int = -1,
        save_best: str | None = None,
        rule: str | None = None,
        save_last: bool = True,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"checkpoint_config.interval must be an int >= 1, got {interval!r}")
        if rule not in (None, "greater", "less"):
            raise ValueError(f"checkpoint_config.rule must be 'greater' or 'less', got {rule!r}")
        self.interval = interval
        self.by_epoch = by_epoch
        self.max_keep_ckpts = max_keep_ckpts
        self.save_best = save_best
        self.rule = rule
        self.save_last = save_last
        self.best_score: float | None = None
        self.best_path: str | None = None

    def before_run(self, runner: Any) -> None:
        if self.by_epoch is None:
            self.by_epoch = runner.by_epoch

    def after_train_epoch(self, runner: Any) -> None:
        if not self.by_epoch:
            return
        done = runner.epoch + 1
        if done % self.interval == 0 or (self.save_last and done >= runner.max_epochs):
            self._save(runner, "epoch", done)

    def after_train_iter(self, runner: Any) -> None:
        if self.by_epoch:
            return
        done = runner.iter + 1
        if done % self.interval == 0 or (self.save_last and done >= runner.max_iters):
            self._save(runner, "iter", done)

    def _save(self, runner: Any, prefix: str, n: int) -> None:
        from detcore.engine.checkpoint import prune_checkpoints

        runner.save_checkpoint(f"{prefix}_{n}.pth")
        if runner.rank == 0:
            prune_checkpoints(runner.work_dir, prefix, self.max_keep_ckpts)

    # -- best checkpoint -----------------------------------------------------------------------------

    def after_val_epoch(self, runner: Any, metrics: dict) -> None:
        if not self.save_best or not metrics:
            return
        key = next(iter(metrics)) if self.save_best == "auto" else self.save_best
        if key not in metrics:
            runner.logger.warning(f"checkpoint_config.save_best: metric '{key}' not in {sorted(metrics)}")
            return
        score = float(metrics[key])
        if math.isnan(score):
            return
        rule = self.rule or ("less" if "loss" in key else "greater")
        if self.best_score is not None and not (
            score > self.best_score if rule == "greater" else score < self.best_score
        ):
            return
        self.best_score = score
        unit, n = ("epoch", runner.epoch + 1) if self.by_epoch else ("iter", runner.iter + 1)
        name = f"best_{key.replace('/', '_')}_{unit}_{n}.pth"
        previous = self.best_path
        self.best_path = name
        runner.save_checkpoint(name, update_latest=False)
        if runner.rank == 0:
            if previous and previous != name:
                (Path(runner.work_dir) / previous).unlink(missing_ok=True)
            runner.logger.info(f"new best {key} = {score:.4f}: saved {name}")

    def before_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["meta"]["best_score"] = self.best_score
        checkpoint["meta"]["best_checkpoint"] = self.best_path

    def after_load_checkpoint(self, checkpoint: dict) -> None:
        meta = checkpoint.get("meta", {})
        self.best_score = meta.get("best_score")
        self.best_path = meta.get("best_checkpoint")
