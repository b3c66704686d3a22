"""The Runner: builds a run from a merged config and drives training, validation and testing.

The loop is the same for both runner types; they differ in what ends the run and what intervals
count. ``EpochBasedRunner`` runs ``max_epochs`` passes over the training data; ``IterBasedRunner``
runs ``max_iters`` iterations, starting a new pass over the data whenever one ends. Every timepoint
fires a run event (:class:`detcore.hookspecs.RunEventSpecs`) on the run's own plugin manager, where
the hooks are registered in priority order.

Counters: ``epoch`` and ``iter`` are the numbers of epochs / iterations completed before the current
one (0-based indices of the current one while it runs); ``inner_iter`` is the index of the current
batch in its epoch. Checkpoints record the position *after* the step being saved.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from detcore.config import Config, load_config, validate_config
from detcore.engine import dist as dist_utils
from detcore.engine.checkpoint import (
    extract_state_dict,
    find_latest,
    load_checkpoint_file,
    load_weights,
    save_atomic,
    write_latest,
)
from detcore.engine.hook import Hook, RunHookManager, check_run_hook, get_priority
from detcore.engine.log_buffer import LogBuffer
from detcore.engine.seed import get_rng_state, set_random_seed, set_rng_state
from detcore.errors import ConfigError

RUNNER_TYPES = ("EpochBasedRunner", "IterBasedRunner")

#: config table -> built-in hook type it configures (registration order = tie order)
BUILTIN_HOOK_TABLES: tuple[tuple[str, str], ...] = (
    ("lr_config", "ParamSchedulerHook"),
    ("optimizer_config", "OptimizerHook"),
    ("timer_config", "IterTimerHook"),
    ("checkpoint_config", "CheckpointHook"),
    ("evaluation", "EvalHook"),
    ("log_config", "LoggerHook"),
)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors and ``Instances`` inside lists/dicts of a batch to ``device`` (metas stay as they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if hasattr(obj, "to") and type(obj).__name__ == "Instances":
        return obj.to(device)
    if isinstance(obj, list):
        return [to_device(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: (v if k == "img_metas" else to_device(v, device)) for k, v in obj.items()}
    return obj


def parse_losses(losses: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (sum of every entry whose key contains ``loss``) and every entry as a float.

    Entries are tensors (averaged) or lists of tensors (each averaged, then summed).
    """
    if not isinstance(losses, Mapping):
        raise TypeError(f"in train mode the model must return a dict of losses, got {type(losses).__name__}")
    values: dict[str, torch.Tensor] = {}
    for key, value in losses.items():
        if isinstance(value, torch.Tensor):
            values[key] = value.mean()
        elif isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
            values[key] = sum(v.mean() for v in value) if value else torch.zeros(())
        else:
            raise TypeError(f"loss '{key}' must be a tensor or a list of tensors, got {type(value).__name__}")
    loss_terms = [v for k, v in values.items() if "loss" in k]
    if not loss_terms:
        raise ValueError(f"the model returned no entry whose name contains 'loss' (keys: {sorted(values)})")
    total = sum(loss_terms)
    values["loss"] = total
    if dist_utils.is_distributed():
        stacked = torch.stack([v.detach().float() for v in values.values()])
        torch.distributed.all_reduce(stacked.div_(dist_utils.get_world_size()))
        log_vars = dict(zip(values, stacked.tolist()))
    else:
        log_vars = {k: v.item() for k, v in values.items()}
    return total, log_vars


class Runner:
    """A training / evaluation run built from a merged :class:`~detcore.config.Config`.

    Use :meth:`from_config`. Attributes: ``model`` (DDP-wrapped in distributed runs),
    ``unwrapped_model``, ``optimizer``, ``epoch``, ``iter``, ``inner_iter``, ``max_epochs`` (None for
    iteration-based runs), ``max_iters``, ``work_dir``, ``cfg``, ``logger``, ``train_dataloader``,
    ``val_dataloader``, ``test_dataloader`` (built on first use), ``rank``, ``world_size``,
    ``hooks`` (call order), ``device``, ``seed``.
    """

    def __init__(
        self,
        cfg: Config,
        work_dir: str | Path | None = None,
        resume: bool | str = False,
        amp: bool | None = None,
        device: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.resume_from = resume
        dist_utils.init_distributed(cfg.get("dist_backend"))
        self.rank = dist_utils.get_rank()
        self.world_size = dist_utils.get_world_size()
        self.device = self._pick_device(device or cfg.get("device"))
        self.timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
        self.timestamp = dist_utils.broadcast_object(self.timestamp)
        self.work_dir = Path(
            work_dir or cfg.get("work_dir") or Path("work_dirs") / Path(cfg.filename or "run").stem
        )
        if self.rank == 0:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        dist_utils.barrier()
        self.logger = self._setup_logger()

        seed = cfg.get("seed")
        if seed is None:
            seed = dist_utils.broadcast_object(int(np.random.randint(2**31)))
        self.seed = int(seed)
        self.deterministic = bool(cfg.get("deterministic", False))
        set_random_seed(self.seed, self.deterministic)

        self._validate()
        if self.rank == 0 and cfg.data:
            cfg.dump(self.work_dir / "config.toml")

        runner_cfg = dict(cfg.get("runner") or {"type": "EpochBasedRunner", "max_epochs": 12})
        rtype = runner_cfg.pop("type", "EpochBasedRunner")
        if rtype not in RUNNER_TYPES:
            raise ConfigError(
                f"{cfg.source_of('runner.type')}: runner.type must be one of {RUNNER_TYPES}, got {rtype!r}"
            )
        self.by_epoch = rtype == "EpochBasedRunner"
        key = "max_epochs" if self.by_epoch else "max_iters"
        if not isinstance(runner_cfg.get(key), int) or runner_cfg[key] < 1:
            raise ConfigError(f"{cfg.source_of('runner')}: runner.{key} must be a positive int for {rtype}")
        self.max_epochs: int | None = runner_cfg[key] if self.by_epoch else None
        self._max_iters: int | None = None if self.by_epoch else runner_cfg[key]

        amp_cfg = dict(cfg.get("amp") or {})
        self.amp_enabled = bool(amp if amp is not None else amp_cfg.get("enabled", False))
        default_dtype = "float16" if self.device.type == "cuda" else "bfloat16"
        self.amp_dtype = getattr(torch, str(amp_cfg.get("dtype", default_dtype)))
        self.grad_scaler = (
            torch.amp.GradScaler(self.device.type)
            if self.amp_enabled and self.amp_dtype == torch.float16
            else None
        )

        self.unwrapped_model = self._build_model()
        self.model: nn.Module = self._wrap_model(self.unwrapped_model)
        self.optimizer: torch.optim.Optimizer | None = (
            self._build_optimizer() if cfg.get("optimizer") else None
        )

        self.epoch = 0
        self.iter = 0
        self.inner_iter = 0
        self._position = {"epoch": 0, "iter": 0, "inner_iter": 0}
        self._stepped_iter = -1
        self._epoch_rng: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None
        self.last_checkpoint: str | None = None
        self.last_metrics: dict[str, float] = {}
        self.log_buffer = LogBuffer()
        self._loaders: dict[str, Any] = {}
        self._evaluators: dict[str, Any] = {}

        self.hook_manager = RunHookManager()
        self.hooks: list[Hook] = self.hook_manager.set_hooks(self._build_hooks())
        self.call = self.hook_manager.hook
        self.param_scheduler = next((h for h in self.hooks if type(h).__name__ == "ParamSchedulerHook"), None)

    # -- construction -----------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: Config | str | Path,
        work_dir: str | Path | None = None,
        resume: bool | str = False,
        amp: bool | None = None,
        device: str | None = None,
    ) -> Runner:
        """A runner for a merged config (or a config path). ``resume``: ``True`` = latest in the work dir."""
        if not isinstance(cfg, Config):
            cfg = load_config(cfg)
        return cls(cfg, work_dir=work_dir, resume=resume, amp=amp, device=device)

    def _pick_device(self, name: str | None) -> torch.device:
        if name:
            device = torch.device(name)
        else:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device

    def _setup_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"detcore.run.{id(self)}")
        logger.propagate = False
        logger.handlers.clear()
        if self.rank == 0:
            fmt = logging.Formatter("%(asctime)s - detcore - %(levelname)s - %(message)s")
            console = logging.StreamHandler(sys.stdout)
            console.setFormatter(fmt)
            logger.addHandler(console)
            file_handler = logging.FileHandler(self.work_dir / f"{self.timestamp}.log")
            file_handler.setFormatter(fmt)
            logger.addHandler(file_handler)
            logger.setLevel(logging.INFO)
        else:
            logger.addHandler(logging.NullHandler())
            logger.setLevel(logging.ERROR)
        return logger

    def _validate(self) -> None:
        """``validate_config`` on all but the ``runner`` table (its ``type`` is a loop, no component)."""
        data = {k: v for k, v in self.cfg.data.items() if k != "runner"}
        validate_config(Config(data, self.cfg.provenance, self.cfg.filename))

    def _build_model(self) -> nn.Module:
        from detcore.registry import build

        if "model" not in self.cfg:
            raise ConfigError(f"{self.cfg.filename}: the config has no [model] table")
        model = build("detector", self.cfg["model"], where="model")
        # as the reference's training entry point does: weight init (prior-probability biases,
        # init_cfg tables, Pretrained backbones) before any resume or load_from replaces weights
        if hasattr(model, "init_weights"):
            model.init_weights()
        model.cfg = self.cfg
        model.to(self.device)
        if self.cfg.get("sync_bn", False) and self.world_size > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model.cfg = self.cfg
        return model

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if self.world_size <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            model,
            device_ids=device_ids,
            find_unused_parameters=bool(self.cfg.get("find_unused_parameters", False)),
        )

    def _build_optimizer(self) -> torch.optim.Optimizer:
        from detcore.engine.optim import build_optimizer, scale_lr

        opt_cfg = copy.deepcopy(dict(self.cfg["optimizer"]))
        auto = self.cfg.get("auto_scale_lr") or {}
        if auto.get("enable", False):
            total = int(self.cfg.get("data.batch_size", 1)) * self.world_size
            base = int(auto.get("base_batch_size", 16))
            lr = scale_lr(opt_cfg, total, base)
            self.logger.info(f"auto_scale_lr: total batch size {total} vs base {base}: lr = {lr:g}")
        return build_optimizer(self.unwrapped_model, opt_cfg)

    def _build_hooks(self) -> list[Hook]:
        from detcore.registry import build

        cfg = self.cfg
        hooks: list[Hook] = []
        best = (cfg.get("evaluation") or {}).get("save_best")
        has_val = cfg.get("data.val") is not None and cfg.get("evaluator") is not None
        for table_name, hook_type in BUILTIN_HOOK_TABLES:
            table = dict(cfg.get(table_name) or {})
            if table_name == "evaluation" and (not has_val or table.pop("enabled", True) is False):
                continue
            if table_name in ("lr_config", "optimizer_config") and self.optimizer is None:
                continue
            if table_name == "lr_config":
                momentum = cfg.get("momentum_config")
                table = {
                    "lr_config": {k: v for k, v in table.items() if k not in ("priority", "type")},
                    "momentum_config": momentum,
                    "by_epoch": self.by_epoch,
                    **{k: table[k] for k in ("priority", "type") if k in table},
                }
            if table_name == "checkpoint_config" and best and "save_best" not in table:
                table["save_best"] = best
            if table_name == "log_config":
                table.pop("hooks", None)  # reference-style lists of logger hooks: the LoggerHook covers them
            table.setdefault("type", hook_type)
            hooks.append(build("run_hook", table, where=table_name))
        for i, table in enumerate(cfg.get("custom_hooks") or []):
            if not isinstance(table, Mapping):
                raise ConfigError(
                    f"{cfg.source_of('custom_hooks')}: custom_hooks.{i} must be a table with a 'type'"
                )
            hook = build("run_hook", table, where=f"custom_hooks.{i}")
            try:
                check_run_hook(hook)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"custom_hooks.{i}: '{table.get('type')}': {exc}") from None
            hooks.append(hook)
        return hooks

    def register_hook(self, hook: Hook, priority: int | str | None = None) -> None:
        """Add a hook object to this run (before :meth:`train` / :meth:`test`)."""
        if priority is not None:
            hook.priority = get_priority(priority)
        self.hooks = self.hook_manager.set_hooks([*self.hooks, hook])

    # -- data -------------------------------------------------------------------------------------------

    def _loader(self, split: str) -> Any:
        if split in self._loaders:
            return self._loaders[split]
        from detcore.data import build_dataloader, build_dataset

        data_cfg = self.cfg.get("data") or {}
        if data_cfg.get(split) is None:
            raise ConfigError(f"{self.cfg.filename}: the config has no [data.{split}] table")
        dataset = build_dataset(data_cfg[split])
        train = split == "train"
        batch_size = int(data_cfg.get("batch_size", 2) if train else data_cfg.get(f"{split}_batch_size", 1))
        loader = build_dataloader(
            dataset,
            batch_size,
            int(data_cfg.get("num_workers", 2)),
            shuffle=train,
            seed=self.seed,
            drop_last=bool(data_cfg.get("drop_last", False)) if train else False,
            group_by_aspect_ratio=bool(data_cfg.get("group_by_aspect_ratio", True)) if train else False,
            distributed=self.world_size > 1,
            infinite=False,
            pad_size_divisor=int(data_cfg.get("pad_size_divisor", 1)),
            persistent_workers=bool(data_cfg.get("persistent_workers", False)),
        )
        if train and len(loader) == 0:
            raise ConfigError(
                f"data.train: the training data gives no batch ({len(dataset)} samples, "
                f"batch size {batch_size}); check the dataset or drop_last"
            )
        self._loaders[split] = loader
        return loader

    @property
    def train_dataloader(self) -> Any:
        return self._loader("train")

    @property
    def val_dataloader(self) -> Any:
        return self._loader("val")

    @property
    def test_dataloader(self) -> Any:
        return self._loader("test")

    @property
    def iters_per_epoch(self) -> int:
        return len(self.train_dataloader)

    @property
    def max_iters(self) -> int:
        if self._max_iters is None:
            self._max_iters = self.max_epochs * self.iters_per_epoch
        return self._max_iters

    def _evaluator(self, split: str) -> Any | None:
        if split not in self._evaluators:
            from detcore.registry import build

            table = self.cfg.get(f"{split}_evaluator") or self.cfg.get("evaluator")
            loader = self._loader(split)
            self._evaluators[split] = (
                build("metric", table, where="evaluator", dataset=loader.dataset) if table else None
            )
        return self._evaluators[split]

    @property
    def position(self) -> dict[str, int]:
        """``{epoch, iter, inner_iter}`` completed once the current step ends (what a checkpoint records)."""
        return dict(self._position)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else 0.0

    def mark_stepped(self) -> None:
        """Called by the optimizer hook after ``optimizer.step()`` of the current iteration."""
        self._stepped_iter = self.iter

    # -- training ---------------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train(self) -> dict[str, float]:
        """Train to ``max_epochs`` / ``max_iters``; returns the last validation's metrics ({} if none)."""
        if self.optimizer is None:
            raise ConfigError(f"{self.cfg.filename}: training needs an [optimizer] table")
        self.model.train()
        loader = self.train_dataloader
        self._prepare_start()
        self.call.before_run(runner=self)
        self.logger.info(
            f"start training: {self.max_epochs} epochs of {len(loader)} iterations"
            if self.by_epoch
            else f"start training: {self.max_iters} iterations ({len(loader)} per pass over the data)"
        )
        try:
            while self.iter < self.max_iters and (not self.by_epoch or self.epoch < self.max_epochs):
                self._train_epoch(loader)
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise
        if not self.last_metrics and any(type(h).__name__ == "EvalHook" for h in self.hooks):
            self.val()
        self.call.after_run(runner=self)
        dist_utils.barrier()  # no rank leaves (and tears the process group down) while another still works
        return dict(self.last_metrics)

    def _prepare_start(self) -> None:
        if self.resume_from:
            path = find_latest(self.work_dir) if self.resume_from is True else Path(self.resume_from)
            if path is None:
                self.logger.info(f"--resume: no checkpoint in {self.work_dir}; starting from scratch")
            else:
                self.resume(path)
                return
        load_from = self.cfg.get("load_from")
        if load_from:
            self.load_weights_from(load_from)

    def _set_epoch(self, loader: Any, epoch: int) -> None:
        """Make the epoch's sample order a function of (seed, epoch) only, as exact resume needs."""
        for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
            elif isinstance(getattr(obj, "generator", None), torch.Generator):  # e.g. torch's RandomSampler
                obj.generator.manual_seed(self.seed + epoch)

    def _train_epoch(self, loader: Any) -> None:
        self._set_epoch(loader, self.epoch)
        if self._pending_rng is not None and self.inner_iter == 0:  # resumed at an epoch boundary
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        mid_epoch_resume = self._pending_rng is not None
        if mid_epoch_resume and self._epoch_rng is not None:
            set_rng_state(self._epoch_rng)  # the states the uninterrupted run had when this epoch began
        else:
            self._epoch_rng = get_rng_state()
        self.call.before_train_epoch(runner=self)
        self._report_bad_data(loader)
        batches = iter(loader)
        for skipped in range(self.inner_iter):  # resuming mid-epoch: the batches already trained on
            if next(batches, None) is None:
                raise RuntimeError(
                    f"cannot resume at batch {self.inner_iter} of epoch {self.epoch + 1}: the data gives "
                    f"only {skipped} batches now (did the dataset or batch size change?)"
                )
        if mid_epoch_resume:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        for batch in batches:
            self._train_iter(batch)
            if not self.by_epoch and self.iter >= self.max_iters:
                break
        else:
            self._position = {"epoch": self.epoch + 1, "iter": self.iter, "inner_iter": 0}
            self.call.after_train_epoch(runner=self)
            self.epoch += 1
            self.inner_iter = 0

    def _train_iter(self, batch: Any) -> None:
        idx = self.inner_iter
        self.call.before_train_iter(runner=self, batch_idx=idx, batch=batch)
        batch = to_device(batch, self.device)
        with self.autocast():
            losses = self.model(**batch)
        loss, log_vars = parse_losses(losses)
        outputs = {"loss": loss, "log_vars": log_vars}
        self._position = {"epoch": self.epoch, "iter": self.iter + 1, "inner_iter": self.inner_iter + 1}
        self.call.after_train_iter(runner=self, batch_idx=idx, batch=batch, outputs=outputs)
        self.iter += 1
        self.inner_iter += 1

    def _report_bad_data(self, loader: Any) -> None:
        dataset = getattr(loader, "dataset", None)
        for name in ("bad_data_summary", "bad_data_report"):
            fn = getattr(dataset, name, None)
            if callable(fn):
                summary = fn()
                if summary:
                    self.logger.warning(f"bad data so far: {summary}")
                return

    def _save_on_interrupt(self) -> None:
        if self._stepped_iter == self.iter:  # the step of the interrupted iteration was applied
            self._position = {"epoch": self.epoch, "iter": self.iter + 1, "inner_iter": self.inner_iter + 1}
        else:
            self._position = {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter}
        name = f"iter_{self._position['iter']}.pth"
        path = self.save_checkpoint(name)
        self.logger.warning(
            f"interrupted at iteration {self._position['iter']}: saved {path}; resume with --resume"
        )

    # -- evaluation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, split: str) -> dict[str, float]:
        loader = self._loader(split)
        metric = self._evaluator(split)
        model = self.unwrapped_model
        was_training = model.training
        model.eval()
        if metric is not None and hasattr(metric, "results"):
            metric.results.clear()
        event = "val" if split == "val" else "test"
        rng = get_rng_state()  # evaluation must not change the training's random streams
        before_iter = getattr(self.call, f"before_{event}_iter")
        after_iter = getattr(self.call, f"after_{event}_iter")
        getattr(self.call, f"before_{event}_epoch")(runner=self)
        for idx, batch in enumerate(loader):
            before_iter(runner=self, batch_idx=idx, batch=batch)
            batch = to_device(batch, self.device)
            with self.autocast():
                outputs = model(**batch)
            if metric is not None:
                metric.process(batch["img_metas"], outputs)
            after_iter(runner=self, batch_idx=idx, batch=batch, outputs=outputs)
        metrics: dict[str, float] = {}
        if metric is not None:
            results = dist_utils.collect_results(metric.results, len(loader.dataset))
            if self.rank == 0:
                metrics = dict(metric.compute(results))
            metrics = dist_utils.broadcast_object(metrics)
        getattr(self.call, f"after_{event}_epoch")(runner=self, metrics=metrics)
        model.train(was_training)
        set_rng_state(rng)
        return metrics

    def val(self) -> dict[str, float]:
        """One validation pass (val events); the metrics are also kept in ``last_metrics``."""
        self.last_metrics = self._evaluate("val")
        return self.last_metrics

    def test(self, checkpoint: str | Path | None = None) -> dict[str, float]:
        """A test-only pass over ``data.test`` with the weights of ``checkpoint`` (if given)."""
        if checkpoint is not None:
            ckpt = self.load_weights_from(checkpoint, strict=False)
            if ckpt is not None:
                self.call.after_load_checkpoint(runner=self, checkpoint=ckpt)
        self.call.before_run(runner=self)
        metrics = self._evaluate("test")
        self.last_metrics = metrics
        self.call.after_run(runner=self)
        dist_utils.barrier()
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------------

    def state_for_checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict of the current position (before hooks add their entries)."""
        from detcore import __version__
        from detcore.plugins import get_plugin_manager

        manager = get_plugin_manager()
        plugins = {name: info.version for name, info in manager.infos.items() if info.loaded}
        meta = {
            **self._position,
            "config": self.cfg.to_toml(),
            "detcore_version": __version__,
            "plugins": plugins,
            "seed": self.seed,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "world_size": self.world_size,
            "epoch_rng": self._epoch_rng,
        }
        checkpoint: dict[str, Any] = {
            "state_dict": self.unwrapped_model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "scheduler": self.param_scheduler.state_dict() if self.param_scheduler is not None else {},
            "meta": meta,
            "rng": dist_utils.all_gather_object(get_rng_state()),
        }
        if self.grad_scaler is not None:
            checkpoint["grad_scaler"] = self.grad_scaler.state_dict()
        classes = getattr(self.unwrapped_model, "CLASSES", None)
        if classes is not None:
            meta["classes"] = list(classes)
        return checkpoint

    def save_checkpoint(self, filename: str, update_latest: bool = True) -> Path:
        """Write ``<work_dir>/<filename>`` atomically (rank 0) and point ``latest.pth`` at it."""
        checkpoint = self.state_for_checkpoint()
        self.call.before_save_checkpoint(runner=self, checkpoint=checkpoint)
        path = self.work_dir / filename
        if self.rank == 0:
            save_atomic(checkpoint, path)
            if update_latest:
                write_latest(self.work_dir, filename)
                self.last_checkpoint = str(path)
        dist_utils.barrier()
        return path

    def resume(self, path: str | Path) -> None:
        """Restore weights, optimizer, scheduler, loop position and RNG states from a checkpoint."""
        ckpt = load_checkpoint_file(path, map_location=self.device)
        load_weights(self.unwrapped_model, extract_state_dict(ckpt), strict=True)
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.param_scheduler is not None and ckpt.get("scheduler") is not None:
            self.param_scheduler.load_state_dict(ckpt["scheduler"])
        if self.grad_scaler is not None and "grad_scaler" in ckpt:
            self.grad_scaler.load_state_dict(ckpt["grad_scaler"])
        meta = ckpt.get("meta", {})
        self.epoch = int(meta.get("epoch", 0))
        self.iter = int(meta.get("iter", 0))
        self.inner_iter = int(meta.get("inner_iter", 0))
        self._position = {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter}
        self._epoch_rng = meta.get("epoch_rng")
        rng = ckpt.get("rng") or []
        if rng:
            if len(rng) != self.world_size:
                self.logger.warning(
                    f"the checkpoint was written by {len(rng)} process(es), this run has {self.world_size}: "
                    "RNG states are not restored exactly"
                )
            self._pending_rng = rng[self.rank] if self.rank < len(rng) else rng[0]
        if meta.get("seed") is not None and int(meta["seed"]) != self.seed:
            self.logger.warning(f"the checkpoint's seed {meta['seed']} differs from the config's {self.seed}")
        self.last_checkpoint = str(path)
        self.call.after_load_checkpoint(runner=self, checkpoint=ckpt)
        self.logger.info(f"resumed from {path} at epoch {self.epoch}, iteration {self.iter}")

    def load_weights_from(self, source: str | Path, strict: bool = False) -> dict[str, Any] | None:
        """Load model weights only (``load_from``, test checkpoints), logging what did not match.

        ``source`` is a path or a URL (downloaded to the cache, checksum-checked). Returns the loaded file.
        """
        path = resolve_checkpoint_path(str(source))
        ckpt = load_checkpoint_file(path, map_location="cpu")
        report = load_weights(self.unwrapped_model, extract_state_dict(ckpt), strict=strict)
        self.logger.info(f"loaded weights from {source}: {report.format()}")
        self.load_report = report
        return ckpt


def resolve_checkpoint_path(source: str) -> Path:
    """A local path for a checkpoint path or URL (URLs are downloaded to the cache, checksum-checked)."""
    from detcore.engine.checkpoint import LATEST_FILE, find_latest
    from detcore.engine.download import is_url

    if not is_url(source):
        path = Path(source)
        if path.name == LATEST_FILE and path.is_file():  # the pointer file a run keeps in its work dir
            return find_latest(path.parent) or path
        return path
    try:
        from detcore.models.checkpoint_io import load_url_to_cache
    except ImportError:
        from detcore.engine.download import download_to_cache as load_url_to_cache
    cache = os.environ.get("DETCORE_CACHE")
    return Path(load_url_to_cache(source, cache_dir=Path(cache) / "checkpoints" if cache else None))
