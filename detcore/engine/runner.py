"""The Runner: assembles a run from a merged config and hands it to its loops.

A run is: the process set-up (distributed group, device, work dir, logger, seed), the model (DDP
wrapped in distributed runs), the optimizer, AMP, the data loaders (built on first use), a training
loop and validation / test loops (:mod:`detcore.engine.loops`), the run hooks
(:func:`detcore.engine.hooks.builder.build_run_hooks`) on the run's own hook manager, and the
state a checkpoint saves (:class:`detcore.engine.checkpoint.RunState`). The counters ``epoch``,
``iter``, ``inner_iter`` and the limits ``max_epochs`` / ``max_iters`` are the training loop's.
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
    RunState,
    extract_state_dict,
    find_latest,
    load_checkpoint_file,
    load_weights,
    resolve_checkpoint_path,
    save_atomic,
    write_latest,
)
from detcore.engine.hook import RunHookManager, get_priority
from detcore.engine.hooks import EvalHook, ParamSchedulerHook
from detcore.engine.hooks.builder import build_run_hooks
from detcore.engine.log_buffer import LogBuffer
from detcore.engine.loops import IGNORED_KEYS, LOOP_ALIASES, BaseTrainLoop, EvalLoop
from detcore.engine.seed import set_random_seed
from detcore.errors import ConfigError, DetcoreError, config_sources, located

#: the loop tables of a config and the loop each builds when the config has no such table
DEFAULT_LOOPS: dict[str, dict[str, Any]] = {
    "runner": {"type": "EpochBasedRunner", "max_epochs": 12},
    "val_loop": {"type": "ValLoop"},
    "test_loop": {"type": "TestLoop"},
}


def _train_loop_attr(name: str) -> property:
    return property(lambda self: getattr(self.train_loop, name), doc=f"The training loop's ``{name}``.")


class Runner:
    """A training / evaluation run built from a merged :class:`~detcore.config.Config`.

    Use :meth:`from_config`. Attributes: ``model`` (DDP-wrapped in distributed runs),
    ``unwrapped_model``, ``optimizer``, ``train_loop``, ``val_loop``, ``test_loop``, ``epoch``,
    ``iter``, ``inner_iter``, ``max_epochs`` (None for iteration-based runs), ``max_iters``,
    ``work_dir``, ``cfg``, ``logger``, ``train_dataloader``, ``val_dataloader``, ``test_dataloader``
    (built on first use), ``rank``, ``world_size``, ``hooks`` (call order), ``device``, ``seed``.
    """

    epoch = _train_loop_attr("epoch")
    iter = _train_loop_attr("iter")
    inner_iter = _train_loop_attr("inner_iter")
    by_epoch = _train_loop_attr("by_epoch")
    max_epochs = _train_loop_attr("max_epochs")
    max_iters = _train_loop_attr("max_iters")
    iters_per_epoch = _train_loop_attr("iters_per_epoch")
    position = _train_loop_attr("position")

    def __init__(
        self,
        cfg: Config,
        work_dir: str | Path | None = None,
        resume: bool | str = False,
        amp: bool | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.resume_from = resume
        dist_utils.init_distributed(cfg.get("dist_backend"))
        self.rank = dist_utils.get_rank()
        self.world_size = dist_utils.get_world_size()
        self.device = self._pick_device(device or cfg.get("device"))
        self.timestamp = dist_utils.broadcast_object(time.strftime("%Y%m%d_%H%M%S", time.localtime()))
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

        validate_config(cfg)  # the [runner] table, whose type may be an alias, is checked by _build_loop
        if self.rank == 0 and cfg.data:
            cfg.dump(self.work_dir / "config.toml")

        amp_cfg = dict(cfg.get("amp") or {})
        self.amp_enabled = bool(amp if amp is not None else amp_cfg.get("enabled", False))
        default_dtype = "float16" if self.device.type == "cuda" else "bfloat16"
        self.amp_dtype = getattr(torch, str(amp_cfg.get("dtype", default_dtype)))
        self.grad_scaler = (
            torch.amp.GradScaler(self.device.type)
            if self.amp_enabled and self.amp_dtype == torch.float16
            else None
        )

        # precision = "bf16": the model's compute modules run under bf16 autocast (set_precision) and the
        # amp machinery runs without a scaler; float32 master weights, losses and post-processing
        from detcore.models.precision import precision_of, resolve_precision

        self.precision = resolve_precision(precision_of(cfg, precision), self.device, where="precision")
        if self.precision == "bf16":
            self.amp_enabled, self.amp_dtype, self.grad_scaler = True, torch.bfloat16, None

        self.unwrapped_model = self._build_model()
        if self.precision == "bf16":
            from detcore.models.precision import set_precision

            set_precision(self.unwrapped_model, "bf16", self.device)
        self.model: nn.Module = self._wrap_model(self.unwrapped_model)
        self.optimizer: torch.optim.Optimizer | None = (
            self._build_optimizer() if cfg.get("optimizer") else None
        )

        self.train_loop: BaseTrainLoop = self._build_loop("runner", BaseTrainLoop)
        self.val_loop: EvalLoop = self._build_loop("val_loop", EvalLoop)
        self.test_loop: EvalLoop = self._build_loop("test_loop", EvalLoop)
        self.last_checkpoint: str | None = None
        self.last_metrics: dict[str, float] = {}
        self.log_buffer = LogBuffer()
        self._loaders: dict[str, Any] = {}

        self.hook_manager = RunHookManager()
        hooks = build_run_hooks(cfg, by_epoch=self.by_epoch, with_optimizer=self.optimizer is not None)
        self.hooks: list[Any] = self.hook_manager.set_hooks(hooks)
        self.call = self.hook_manager.hook

    # -- construction -----------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cfg: Config | str | Path,
        work_dir: str | Path | None = None,
        resume: bool | str = False,
        amp: bool | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> Runner:
        """A runner for a merged config (or a config path). ``resume``: ``True`` = latest in the work dir."""
        if not isinstance(cfg, Config):
            cfg = load_config(cfg)
        return cls(cfg, work_dir=work_dir, resume=resume, amp=amp, device=device, precision=precision)

    def _pick_device(self, name: str | None) -> torch.device:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device

    def _setup_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"detcore.run.{id(self)}")
        logger.propagate = False
        logger.handlers.clear()
        if self.rank == 0:
            fmt = logging.Formatter("%(asctime)s - detcore - %(levelname)s - %(message)s")
            for handler in (
                logging.StreamHandler(sys.stdout),
                logging.FileHandler(self.work_dir / f"{self.timestamp}.log"),
            ):
                handler.setFormatter(fmt)
                logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        else:
            logger.addHandler(logging.NullHandler())
            logger.setLevel(logging.ERROR)
        return logger

    def _build_model(self) -> nn.Module:
        from detcore.registry import build

        if "model" not in self.cfg:
            raise ConfigError(f"{self.cfg.filename}: the config has no [model] table")
        with config_sources(self.cfg.source_of):  # errors name the file and key path of the table
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

        return DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
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
        try:
            return build_optimizer(self.unwrapped_model, opt_cfg)
        except DetcoreError:
            raise
        except Exception as exc:  # e.g. float() of a list: name the table
            located(exc, f"{self.cfg.source_of('optimizer')}: optimizer")
            raise

    def _build_loop(self, key: str, base: type) -> Any:
        """The loop of table ``key`` (:data:`DEFAULT_LOOPS` when absent), built with ``runner=self``."""
        from detcore.registry import build

        default = DEFAULT_LOOPS[key]
        table = self.cfg.get(key) or default
        where = f"{self.cfg.source_of(key)}: {key}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table with a 'type'")
        table = dict(table)
        name = table.setdefault("type", default["type"])
        table["type"] = LOOP_ALIASES.get(name, name)
        for ignored in IGNORED_KEYS.get(table["type"], ()):
            table.pop(ignored, None)
        try:
            loop = build("loop", table, where=where, runner=self)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(loop, base):
            raise ConfigError(f"{where}.type: '{name}' builds a {type(loop).__name__}, not a {base.__name__}")
        return loop

    def register_hook(self, hook: Any, priority: int | str | None = None) -> None:
        """Add a run hook (a ``Hook`` or any object implementing run events) before ``train`` / ``test``."""
        if priority is not None:
            hook.priority = get_priority(priority)
        self.hooks = self.hook_manager.set_hooks([*self.hooks, hook])

    @property
    def param_scheduler(self) -> ParamSchedulerHook | None:
        return next((h for h in self.hooks if isinstance(h, ParamSchedulerHook)), None)

    # -- data -------------------------------------------------------------------------------------------

    def dataloader(self, split: str) -> Any:
        """The data loader of ``data.<split>`` (``train``, ``val``, ``test``), built on first use."""
        if split in self._loaders:
            return self._loaders[split]
        from detcore.data import build_dataloader, build_dataset

        data_cfg = self.cfg.get("data") or {}
        if data_cfg.get(split) is None:
            raise ConfigError(f"{self.cfg.filename}: the config has no [data.{split}] table")
        with config_sources(self.cfg.source_of):
            dataset = build_dataset(data_cfg[split], where=f"data.{split}")
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
        return self.dataloader("train")

    @property
    def val_dataloader(self) -> Any:
        return self.dataloader("val")

    @property
    def test_dataloader(self) -> Any:
        return self.dataloader("test")

    # -- what loops and hooks call ----------------------------------------------------------------------

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else 0.0

    def mark_stepped(self) -> None:
        """Called by the optimizer hook after ``optimizer.step()`` of the current iteration."""
        self.train_loop.mark_stepped()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The region a forward runs in: ``[amp]``'s autocast, or none (also in ``precision = "bf16"``,
        whose autocast regions are the model's own compute modules)."""
        if not self.amp_enabled or self.precision == "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- running ----------------------------------------------------------------------------------------

    def train(self) -> dict[str, float]:
        """Train to ``max_epochs`` / ``max_iters``; returns the last validation's metrics ({} if none)."""
        if self.optimizer is None:
            raise ConfigError(f"{self.cfg.filename}: training needs an [optimizer] table")
        self.model.train()
        _ = self.train_loop.dataloader  # the data is built before any resume, as in an uninterrupted run
        self._prepare_start()
        self.call.before_run(runner=self)
        self.train_loop.run()
        if not self.last_metrics and any(isinstance(h, EvalHook) for h in self.hooks):
            self.val()
        self.call.after_run(runner=self)
        dist_utils.barrier()  # no rank leaves (and tears the process group down) while another still works
        return dict(self.last_metrics)

    def _prepare_start(self) -> None:
        """Resume (``resume``) or load ``load_from`` weights before training starts."""
        if self.resume_from:
            path = find_latest(self.work_dir) if self.resume_from is True else Path(self.resume_from)
            if path is None:
                self.logger.info(f"--resume: no checkpoint in {self.work_dir}; starting from scratch")
            else:
                try:
                    self.resume(path)
                except Exception as exc:  # name how the file was chosen
                    auto = " (auto-selected in the work dir; --resume PATH picks another)"
                    located(exc, f"--resume {path}" + (auto if self.resume_from is True else ""))
                    raise
                return
        load_from = self.cfg.get("load_from")
        if load_from:
            try:
                self.load_weights_from(load_from)
            except Exception as exc:
                located(exc, f"{self.cfg.source_of('load_from')}: load_from")
                raise

    def val(self) -> dict[str, float]:
        """One validation pass (val events); the metrics are also kept in ``last_metrics``."""
        self.last_metrics = self.val_loop.run()
        return self.last_metrics

    def test(self, checkpoint: str | Path | None = None) -> dict[str, float]:
        """A test-only pass over ``data.test`` with the weights of ``checkpoint`` (if given)."""
        if checkpoint is not None:
            ckpt = self.load_weights_from(checkpoint, strict=False)
            if ckpt is not None:
                self.call.after_load_checkpoint(runner=self, checkpoint=ckpt)
        self.call.before_run(runner=self)
        self.last_metrics = self.test_loop.run()
        self.call.after_run(runner=self)
        dist_utils.barrier()
        return self.last_metrics

    # -- checkpoints ------------------------------------------------------------------------------------

    def run_state(self) -> RunState:
        """What this run's checkpoints save and a resume restores."""
        return RunState(
            self.unwrapped_model, self.optimizer, self.param_scheduler, self.grad_scaler, self.train_loop
        )

    def state_for_checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict of the current position (before hooks add their entries)."""
        from detcore import __version__
        from detcore.plugins import get_plugin_manager

        meta: dict[str, Any] = {
            "config": self.cfg.to_toml(),
            "detcore_version": __version__,
            "plugins": {
                name: info.version for name, info in get_plugin_manager().infos.items() if info.loaded
            },
            "seed": self.seed,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "world_size": self.world_size,
        }
        classes = getattr(self.unwrapped_model, "CLASSES", None)
        if classes is not None:
            meta["classes"] = list(classes)
        return self.run_state().to_checkpoint(meta)

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
        """Restore weights, optimizer, scheduler, AMP scaler, loop position and RNG states from ``path``."""
        ckpt = load_checkpoint_file(path, map_location=self.device)
        for warning in self.run_state().restore(ckpt, self.rank, self.world_size):
            self.logger.warning(warning)
        saved_seed = ckpt.get("meta", {}).get("seed")
        if saved_seed is not None and int(saved_seed) != self.seed:
            self.logger.warning(f"the checkpoint's seed {saved_seed} differs from the config's {self.seed}")
        self.last_checkpoint = str(path)
        self.call.after_load_checkpoint(runner=self, checkpoint=ckpt)
        self.logger.info(f"resumed from {path} at epoch {self.epoch}, iteration {self.iter}")

    def load_weights_from(self, source: str | Path, strict: bool = False) -> dict[str, Any] | None:
        """Load model weights only (``load_from``, test checkpoints), logging what did not match.

        ``source`` is a path or a URL (downloaded to the cache, checksum-checked). Returns the loaded file.
        """
        ckpt = load_checkpoint_file(resolve_checkpoint_path(source), map_location="cpu")
        self.load_report = load_weights(self.unwrapped_model, extract_state_dict(ckpt), strict=strict)
        self.logger.info(f"loaded weights from {source}: {self.load_report.format()}")
        return ckpt
