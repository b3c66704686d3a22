"""Iteration time, data time, ETA and memory of training iterations."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

from detcore.engine.hook import Hook


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on ``device`` (MiB), or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class IterTimerHook(Hook):
    """Writes ``time`` (whole iteration), ``data_time`` (waiting for the batch) into ``runner.log_buffer``."""

    default_priority = "NORMAL"

    def __init__(self, priority: int | str | None = None) -> None:
        super().__init__(priority)
        self._last = 0.0
        self._iter_start = 0.0

    def before_train_epoch(self, runner: Any) -> None:
        self._last = time.perf_counter()

    def before_train_iter(self, runner: Any) -> None:
        now = time.perf_counter()
        runner.log_buffer.update({"data_time": now - self._last})
        self._iter_start = now

    def after_train_iter(self, runner: Any) -> None:
        now = time.perf_counter()
        runner.log_buffer.update({"time": now - self._last})
        self._last = now
