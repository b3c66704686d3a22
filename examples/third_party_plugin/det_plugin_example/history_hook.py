"""LossHistoryHook: records each training iteration's logged losses and writes them at the end."""

from __future__ import annotations

import json
import os
from typing import Any

from detcore.hookspecs import hookimpl


class LossHistoryHook:
    """Writes ``[{"iter": i, "loss": ..., ...}, ...]`` to ``<work_dir>/<filename>`` after the run."""

    def __init__(self, filename: str = "loss_history.json", priority: int = 80) -> None:
        self.filename = filename
        self.priority = priority
        self.history: list[dict[str, float]] = []

    @hookimpl
    def after_train_iter(self, runner: Any, outputs: dict) -> None:
        record = {"iter": int(runner.iter)}
        record.update({k: float(v) for k, v in outputs.get("log_vars", {}).items()})
        self.history.append(record)

    @hookimpl
    def after_run(self, runner: Any) -> None:
        if getattr(runner, "rank", 0) != 0:
            return
        with open(os.path.join(runner.work_dir, self.filename), "w") as f:
            json.dump(self.history, f, indent=1)
