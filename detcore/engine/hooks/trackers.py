"""Experiment-tracker run hooks: MLflow and Weights & Biases (rank 0 only).

Both send the same figures as the JSON log: every ``interval`` training iterations the mean of each
logged scalar since the last send (``train/loss``, ``train/loss_cls``, ..., ``train/lr``), and every
evaluation's metrics (``val/bbox_mAP``, ...), with the iteration as the step. They start their run
in ``before_run`` with the merged config as parameters and close it in ``after_run``.

A tracker hook is active only when it is configured (listed in ``custom_hooks``) and its package
imports; without the package the run goes on and the log says once that the tracker is off. Use them
offline with ``tracking_uri = "sqlite:///mlflow.db"`` or ``"file:./mlruns"`` (MLflow; recent releases
want ``MLFLOW_ALLOW_FILE_STORE=true`` for the file store) or ``mode = "offline"`` (W&B).

    [[custom_hooks]]
    type = "MlflowLoggerHook"
    exp_name = "shapes"
    tracking_uri = "file:./mlruns"
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from detcore.engine.hook import Hook


def _flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"model.backbone.depth": 50, ...}`` (arrays as their string)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


class TrackerHook(Hook):
    """The shared part: when to send what. Subclasses implement ``_start``, ``_send`` and ``_finish``."""

    default_priority = "VERY_LOW"
    package = ""

    def __init__(self, interval: int = 50, priority: int | str | None = None) -> None:
        super().__init__(priority)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"{type(self).__name__}: interval must be an int >= 1, got {interval!r}")
        self.interval = interval
        self.active = False
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def _import(self, runner: Any) -> Any:
        try:
            return importlib.import_module(self.package)
        except ImportError:
            runner.logger.warning(
                f"{type(self).__name__}: the '{self.package}' package is not installed; "
                f"this tracker is off (pip install {self.package.split('.')[0]})"
            )
            return None

    def before_run(self, runner: Any) -> None:
        if runner.rank != 0:
            return
        module = self._import(runner)
        if module is None:
            return
        self._start(module, runner, _flat(runner.cfg.to_dict()))
        self.active = True

    def after_train_iter(self, runner: Any, outputs: dict) -> None:
        if not self.active:
            return
        for key, value in outputs.get("log_vars", {}).items():
            if isinstance(value, (int, float)):
                self._sums[key] += float(value)
        self._count += 1
        done = runner.iter + 1
        if done % self.interval == 0 or done >= runner.max_iters:
            figures = {f"train/{k}": v / self._count for k, v in self._sums.items()}
            figures["train/lr"] = float(runner.current_lr())
            self._send(figures, done)
            self._sums.clear()
            self._count = 0

    def after_val_epoch(self, runner: Any, metrics: dict) -> None:
        self._send_metrics(runner, "val", metrics)

    def after_test_epoch(self, runner: Any, metrics: dict) -> None:
        self._send_metrics(runner, "test", metrics)

    def _send_metrics(self, runner: Any, mode: str, metrics: Mapping[str, Any]) -> None:
        if self.active:
            numbers = {f"{mode}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            if numbers:
                self._send(numbers, int(getattr(runner, "position", {}).get("iter", runner.iter)))

    def after_run(self, runner: Any) -> None:
        if self.active:
            self._finish(runner)
            self.active = False

    def _start(self, module: Any, runner: Any, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _send(self, figures: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _finish(self, runner: Any) -> None:
        raise NotImplementedError


class MlflowLoggerHook(TrackerHook):
    """MLflow: one run in experiment ``exp_name`` at ``tracking_uri`` (default: MLflow's own setting);
    the merged config as parameters and ``config.toml`` as an artifact; ``log_checkpoint`` also
    uploads the last checkpoint at the end."""

    package = "mlflow"

    def __init__(
        self,
        exp_name: str = "detcore",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
        log_checkpoint: bool = False,
        interval: int = 50,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(interval, priority)
        self.exp_name, self.run_name, self.tracking_uri = exp_name, run_name, tracking_uri
        self.tags = dict(tags or {})
        self.log_checkpoint = log_checkpoint
        self.run_id: str | None = None

    def _start(self, module: Any, runner: Any, params: dict[str, Any]) -> None:
        self._mlflow = module
        if self.tracking_uri:
            module.set_tracking_uri(self.tracking_uri)
        module.set_experiment(self.exp_name)
        run = module.start_run(run_name=self.run_name or f"{Path(runner.work_dir).name}_{runner.timestamp}")
        self.run_id = run.info.run_id
        module.set_tags(self.tags)
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            module.log_params({k: str(v)[:500] for k, v in items[i : i + 100]})
        config = Path(runner.work_dir) / "config.toml"
        if config.is_file():
            module.log_artifact(str(config))

    def _send(self, figures: dict[str, float], step: int) -> None:
        self._mlflow.log_metrics(figures, step=step)

    def _finish(self, runner: Any) -> None:
        latest = Path(runner.work_dir) / "latest.pth"
        if self.log_checkpoint and latest.exists():
            self._mlflow.log_artifact(str(latest.resolve()))
        self._mlflow.end_run()


class WandbLoggerHook(TrackerHook):
    """Weights & Biases: ``wandb.init(project=..., name=..., mode=..., dir=<work_dir>)`` with the merged
    config; ``mode = "offline"`` writes the run under ``<work_dir>/wandb`` for a later ``wandb sync``."""

    package = "wandb"

    def __init__(
        self,
        project: str = "detcore",
        name: str | None = None,
        mode: str | None = None,
        tags: list[str] | None = None,
        interval: int = 50,
        priority: int | str | None = None,
    ) -> None:
        super().__init__(interval, priority)
        if mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"WandbLoggerHook: mode must be online, offline or disabled, got {mode!r}")
        self.project, self.run_name, self.mode, self.tags = project, name, mode, list(tags or [])
        self.run: Any = None

    def _start(self, module: Any, runner: Any, params: dict[str, Any]) -> None:
        self.run = module.init(
            project=self.project,
            name=self.run_name or f"{Path(runner.work_dir).name}_{runner.timestamp}",
            mode=self.mode,
            dir=str(runner.work_dir),
            config=params,
            tags=self.tags,
            reinit=True,
        )
        # rows carry the iteration as "iter" rather than W&B's own step, so that a validation logged at
        # the iteration of the last training row is kept (W&B drops a step below its current one)
        self.run.define_metric("iter")
        for prefix in ("train", "val", "test"):
            self.run.define_metric(f"{prefix}/*", step_metric="iter")

    def _send(self, figures: dict[str, float], step: int) -> None:
        self.run.log({**figures, "iter": step})

    def _finish(self, runner: Any) -> None:
        self.run.finish()
