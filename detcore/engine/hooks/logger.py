"""Text, JSON-lines and TensorBoard logs of training scalars and evaluation metrics (rank 0 only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detcore.engine.hook import Hook
from detcore.engine.hooks.timer import peak_memory_mb
from detcore.engine.progress import ProgressBar, format_seconds, is_tty


class LoggerHook(Hook):
    """Every ``interval`` iterations: one text line and one JSON object with the averages since the last one.

    JSON lines (``<work_dir>/<timestamp>.log.json``) hold ``mode`` (train/val/test), ``epoch``,
    ``iter``, ``lr``, every logged scalar (losses, ``grad_norm``), ``time``, ``data_time``,
    ``memory`` (MiB) and, for evaluations, the metrics. TensorBoard events go to
    ``<work_dir>/tf_logs`` when ``tensorboard`` is true and ``torch.utils.tensorboard`` imports. On
    an interactive terminal a progress bar shows every iteration between the log lines.
    """

    default_priority = "VERY_LOW"

    def __init__(
        self,
        interval: int = 50,
        tensorboard: bool = True,
        json_log: bool = True,
        progress_bar: bool | None = None,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(priority)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"log_config.interval must be an int >= 1, got {interval!r}")
        self.interval = interval
        self.tensorboard = tensorboard
        self.json_log = json_log
        self.progress_bar = progress_bar
        self._json = None
        self._writer = None
        self._bar: ProgressBar | None = None

    # -- set-up ---------------------------------------------------------------------------------------

    def before_run(self, runner: Any) -> None:
        if runner.rank != 0:
            return
        if self.json_log and self._json is None:
            self.json_path = Path(runner.work_dir) / f"{runner.timestamp}.log.json"
            self._json = open(self.json_path, "a", buffering=1)
        if self.tensorboard and self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                runner.logger.debug("tensorboard is not installed; TensorBoard logging is off")
            else:
                self._writer = SummaryWriter(str(Path(runner.work_dir) / "tf_logs"))
        if self.progress_bar is None:
            self.progress_bar = is_tty()

    def after_run(self, runner: Any) -> None:
        self._close_bar()
        if self._json is not None:
            self._json.close()
            self._json = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- training -------------------------------------------------------------------------------------

    def before_train_epoch(self, runner: Any) -> None:
        if runner.rank == 0 and self.progress_bar:
            total = runner.iters_per_epoch if runner.by_epoch else runner.max_iters
            self._bar = ProgressBar(total, desc=f"epoch {runner.epoch + 1} " if runner.by_epoch else "")
            self._bar.done = runner.inner_iter if runner.by_epoch else runner.iter

    def after_train_epoch(self, runner: Any) -> None:
        if runner.by_epoch:
            self._close_bar()

    def after_train_iter(self, runner: Any, outputs: dict) -> None:
        runner.log_buffer.update(outputs["log_vars"])
        if runner.rank != 0:
            return
        if self._bar is not None:
            self._bar.update(1, f"loss {outputs['log_vars'].get('loss', float('nan')):.4f}")
        done = runner.iter + 1
        end_of_epoch = runner.by_epoch and runner.inner_iter + 1 >= runner.iters_per_epoch
        if done % self.interval and not end_of_epoch and done < runner.max_iters:
            return
        self.log_train(runner)

    def log_train(self, runner: Any) -> None:
        values = runner.log_buffer.average()
        runner.log_buffer.clear()
        record: dict[str, Any] = {
            "mode": "train",
            "epoch": runner.epoch + 1,
            "iter": runner.iter + 1,
            "lr": runner.current_lr(),
        }
        memory = peak_memory_mb(runner.device)
        time_ = values.pop("time", None)
        data_time = values.pop("data_time", None)
        record.update(values)
        if time_ is not None:
            record["time"] = time_
            record["data_time"] = data_time
        record["memory"] = round(memory)
        if runner.by_epoch:
            head = f"Epoch [{runner.epoch + 1}][{runner.inner_iter + 1}/{runner.iters_per_epoch}]"
        else:
            head = f"Iter [{runner.iter + 1}/{runner.max_iters}]"
        parts = [head, f"lr: {record['lr']:.4e}"]
        if time_ is not None:
            eta = time_ * (runner.max_iters - runner.iter - 1)
            parts += [f"eta: {format_seconds(eta)}", f"time: {time_:.3f}", f"data_time: {data_time:.3f}"]
        parts.append(f"memory: {record['memory']}")
        parts += [f"{k}: {v:.4f}" for k, v in values.items()]
        self._emit(runner, ", ".join(parts), record)
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "iter"):
                    self._writer.add_scalar(f"train/{key}", value, runner.iter + 1)

    # -- evaluation -----------------------------------------------------------------------------------

    def before_val_epoch(self, runner: Any) -> None:
        self._eval_bar(runner, runner.val_dataloader)

    def after_val_iter(self, runner: Any) -> None:
        if self._bar is not None and runner.rank == 0:
            self._bar.update(1)

    def after_val_epoch(self, runner: Any, metrics: dict) -> None:
        self._log_metrics(runner, "val", metrics)

    def before_test_epoch(self, runner: Any) -> None:
        self._eval_bar(runner, runner.test_dataloader)

    def after_test_iter(self, runner: Any) -> None:
        if self._bar is not None and runner.rank == 0:
            self._bar.update(1)

    def after_test_epoch(self, runner: Any, metrics: dict) -> None:
        self._log_metrics(runner, "test", metrics)

    def _eval_bar(self, runner: Any, loader: Any) -> None:
        if runner.rank == 0 and self.progress_bar:
            self._train_bar, self._bar = self._bar, ProgressBar(len(loader), desc="eval ")

    def _log_metrics(self, runner: Any, mode: str, metrics: dict) -> None:
        if runner.rank != 0:
            return
        if self.progress_bar and self._bar is not None:
            self._close_bar()
            self._bar = getattr(self, "_train_bar", None)
        record = {
            "mode": mode,
            "epoch": runner.position["epoch"] if runner.by_epoch else runner.epoch + 1,
            "iter": runner.position["iter"],
            **{k: _plain(v) for k, v in metrics.items()},
        }
        head = f"Epoch({mode}) [{record['epoch']}]" if runner.by_epoch else f"Iter({mode}) [{record['iter']}]"
        text = ", ".join(
            [head]
            + [
                f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                for k, v in record.items()
                if k not in ("mode", "epoch", "iter")
            ]
        )
        self._emit(runner, text, record)
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"{mode}/{key}", value, runner.iter)

    # -- output ---------------------------------------------------------------------------------------

    def _emit(self, runner: Any, text: str, record: dict) -> None:
        if self._bar is not None:
            self._bar.clear()
        runner.logger.info(text)
        if self._json is not None:
            self._json.write(json.dumps(record) + "\n")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _plain(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value if isinstance(value, (str, int, list, dict)) else str(value)
