"""Training, validation and test loops: what a run iterates over, what its counters mean, which events fire.

A loop is driven by a :class:`~detcore.engine.Runner`, which owns the model, the optimizer, the data
and the run's hook manager (``runner.call``); the loop iterates and fires the run events
(:class:`detcore.hookspecs.RunEventSpecs`). Loops are components of kind ``loop``: the ``[runner]``
table names the training loop (``"EpochBasedRunner"`` and ``"IterBasedRunner"`` are the names the
reference's configs use for :class:`EpochBasedTrainLoop` and :class:`IterBasedTrainLoop`), the
optional ``[val_loop]`` and ``[test_loop]`` tables the evaluation loops. Every factory takes the
``runner`` and the keys of its table.

Training counters: ``epoch`` and ``iter`` are the numbers of epochs / iterations completed before
the current one (0-based indices of the current one while it runs); ``inner_iter`` is the index of
the current batch in its epoch. ``position`` is what they will be once the current step ends, which
is what a checkpoint written during the step records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from detcore.engine import dist as dist_utils
from detcore.engine.seed import get_rng_state, set_rng_state
from detcore.structures.instances import Instances

if TYPE_CHECKING:
    from detcore.engine.runner import Runner

#: ``[runner] type`` names of the reference's configs -> the loop they select
LOOP_ALIASES: dict[str, str] = {
    "EpochBasedRunner": "EpochBasedTrainLoop",
    "IterBasedRunner": "IterBasedTrainLoop",
}

#: keys of a ``[runner]`` table a training loop ignores: the other kind's limit, which a table merged
#: over a base config of the other kind still carries
IGNORED_KEYS: dict[str, tuple[str, ...]] = {
    "EpochBasedTrainLoop": ("max_iters",),
    "IterBasedTrainLoop": ("max_epochs",),
}


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors and ``Instances`` inside lists/dicts of a batch to ``device`` (metas stay as they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Instances):
        return obj.to(device)
    if isinstance(obj, list):
        return [to_device(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: (v if k == "img_metas" else to_device(v, device)) for k, v in obj.items()}
    return obj


def parse_losses(losses: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (sum of every entry whose key contains ``loss``) and every entry as a float.

    Entries are tensors (averaged) or lists of tensors (each averaged, then summed). In distributed
    runs the floats are averaged over the processes.
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


class BaseLoop:
    """A loop of a run: :meth:`run` iterates and fires the run events on ``runner.call``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def run(self) -> Any:
        raise NotImplementedError


# -- training -------------------------------------------------------------------------------------------


class BaseTrainLoop(BaseLoop):
    """Passes over the training data, one ``before/after_train_epoch`` pair per pass.

    Subclasses say when training ends (:meth:`done`, :attr:`max_iters`) and whether a pass may stop
    part-way (:meth:`stop_in_epoch`). ``dataloader`` defaults to the runner's training data.

    Exact resume: each pass's sample order is a function of (seed, epoch) only, the RNG states at the
    start of the pass are kept (``epoch_rng``) and, resuming part-way through a pass, the batches
    already trained on are drawn again under those states before the saved states are restored.
    """

    by_epoch: bool = True
    max_epochs: int | None = None

    def __init__(self, runner: Runner, dataloader: Any | None = None) -> None:
        super().__init__(runner)
        self._dataloader = dataloader
        self.epoch = 0
        self.iter = 0
        self.inner_iter = 0
        self._position = {"epoch": 0, "iter": 0, "inner_iter": 0}
        self._stepped_iter = -1
        self._epoch_rng: dict[str, Any] | None = None
        self._pending_rng: dict[str, Any] | None = None

    @property
    def dataloader(self) -> Any:
        return self._dataloader if self._dataloader is not None else self.runner.train_dataloader

    @property
    def iters_per_epoch(self) -> int:
        return len(self.dataloader)

    @property
    def max_iters(self) -> int:
        raise NotImplementedError

    @property
    def position(self) -> dict[str, int]:
        """``{epoch, iter, inner_iter}`` completed once the current step ends (what a checkpoint records)."""
        return dict(self._position)

    def done(self) -> bool:
        return self.iter >= self.max_iters

    def stop_in_epoch(self) -> bool:
        """Whether to leave the current pass after the iteration that just ended."""
        return False

    def mark_stepped(self) -> None:
        """Called (through the runner) by the optimizer hook after ``optimizer.step()`` of this iteration."""
        self._stepped_iter = self.iter

    # -- state for checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The position after the current step and the RNG states at the start of the current pass."""
        return {**self._position, "epoch_rng": self._epoch_rng}

    def load_state_dict(self, state: Mapping[str, Any], rng: dict[str, Any] | None = None) -> None:
        """Continue from ``state`` (as :meth:`state_dict` wrote it); ``rng``: this process's saved RNG."""
        self.epoch = int(state.get("epoch", 0))
        self.iter = int(state.get("iter", 0))
        self.inner_iter = int(state.get("inner_iter", 0))
        self._position = {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter}
        self._epoch_rng = state.get("epoch_rng")
        self._pending_rng = rng

    # -- the loop -----------------------------------------------------------------------------------------

    def start_message(self) -> str:
        return f"start training: {self.max_iters} iterations ({self.iters_per_epoch} per pass over the data)"

    def run(self) -> None:
        """Train until :meth:`done`; on Ctrl-C save ``iter_N.pth`` at the last finished step and re-raise."""
        self.runner.logger.info(self.start_message())
        try:
            while not self.done():
                self.run_epoch()
        except KeyboardInterrupt:
            self._save_on_interrupt()
            raise

    def run_epoch(self) -> None:
        runner = self.runner
        loader = self.dataloader
        self._set_epoch(loader, self.epoch)
        if self._pending_rng is not None and self.inner_iter == 0:  # resumed at an epoch boundary
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        mid_epoch_resume = self._pending_rng is not None
        if mid_epoch_resume and self._epoch_rng is not None:
            set_rng_state(self._epoch_rng)  # the states the uninterrupted run had when this epoch began
        else:
            self._epoch_rng = get_rng_state()
        runner.call.before_train_epoch(runner=runner)
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
            self.run_iter(batch)
            if self.stop_in_epoch():
                break
        else:
            self._position = {"epoch": self.epoch + 1, "iter": self.iter, "inner_iter": 0}
            _report_bad_data(loader, runner, "train")
            runner.call.after_train_epoch(runner=runner)
            self.epoch += 1
            self.inner_iter = 0

    def run_iter(self, batch: Any) -> None:
        """Forward a batch, fire the iteration events (the optimizer hook steps in ``after_train_iter``)."""
        runner = self.runner
        idx = self.inner_iter
        runner.call.before_train_iter(runner=runner, batch_idx=idx, batch=batch)
        batch = to_device(batch, runner.device)
        with runner.autocast():
            losses = runner.model(**batch)
        loss, log_vars = parse_losses(losses)
        outputs = {"loss": loss, "log_vars": log_vars}
        self._position = {"epoch": self.epoch, "iter": self.iter + 1, "inner_iter": self.inner_iter + 1}
        runner.call.after_train_iter(runner=runner, batch_idx=idx, batch=batch, outputs=outputs)
        self.iter += 1
        self.inner_iter += 1

    def _set_epoch(self, loader: Any, epoch: int) -> None:
        """Make the epoch's sample order a function of (seed, epoch) only, as exact resume needs."""
        for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
            elif isinstance(getattr(obj, "generator", None), torch.Generator):  # e.g. torch's RandomSampler
                obj.generator.manual_seed(self.runner.seed + epoch)

    def _save_on_interrupt(self) -> None:
        if self._stepped_iter == self.iter:  # the step of the interrupted iteration was applied
            self._position = {"epoch": self.epoch, "iter": self.iter + 1, "inner_iter": self.inner_iter + 1}
        else:
            self._position = {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter}
        path = self.runner.save_checkpoint(f"iter_{self._position['iter']}.pth")
        self.runner.logger.warning(
            f"interrupted at iteration {self._position['iter']}: saved {path}; resume with --resume"
        )


def _report_bad_data(loader: Any, runner: Any, split: str) -> None:
    """Log the split's bad items and counts, and write the full list into the work dir (rank 0)."""
    from detcore.data.bad_data import report_bad_data

    if getattr(runner, "rank", 0) == 0:
        report_bad_data(getattr(loader, "dataset", None), split, runner.work_dir, runner.logger)


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class EpochBasedTrainLoop(BaseTrainLoop):
    """``max_epochs`` full passes over the training data; intervals count epochs."""

    by_epoch = True

    def __init__(self, runner: Runner, max_epochs: int, dataloader: Any | None = None) -> None:
        super().__init__(runner, dataloader)
        self.max_epochs = _positive_int(max_epochs, "max_epochs")

    @property
    def max_iters(self) -> int:
        return self.max_epochs * self.iters_per_epoch

    def done(self) -> bool:
        return self.epoch >= self.max_epochs or self.iter >= self.max_iters

    def start_message(self) -> str:
        return f"start training: {self.max_epochs} epochs of {self.iters_per_epoch} iterations"


class IterBasedTrainLoop(BaseTrainLoop):
    """``max_iters`` iterations, a new pass over the data whenever one ends; intervals count iterations.

    The pass cut short by ``max_iters`` fires no ``after_train_epoch``.
    """

    by_epoch = False
    max_epochs = None

    def __init__(self, runner: Runner, max_iters: int, dataloader: Any | None = None) -> None:
        super().__init__(runner, dataloader)
        self._max_iters = _positive_int(max_iters, "max_iters")

    @property
    def max_iters(self) -> int:
        return self._max_iters

    def stop_in_epoch(self) -> bool:
        return self.iter >= self.max_iters


# -- evaluation -----------------------------------------------------------------------------------------


_UNBUILT = object()


class EvalLoop(BaseLoop):
    """One pass over an evaluation split with the unwrapped model in eval mode; returns the metrics.

    ``dataloader`` defaults to the runner's loader of the split; ``evaluator`` (a metric table or a
    built metric) to the config's ``<split>_evaluator`` table, else ``evaluator``. Results are
    gathered over the processes, computed on rank 0 and broadcast. The training's RNG states are
    restored afterwards, so evaluating does not change the training's random streams. ``fast_path``
    (default: on for the test pass, off for validation during training) runs :meth:`inference_model`.
    """

    split = "val"
    #: default of ``fast_path``: the test pass runs the inference fast path, validation the model as it is
    default_fast_path = False

    def __init__(
        self,
        runner: Runner,
        dataloader: Any | None = None,
        evaluator: Any | None = None,
        fast_path: bool | None = None,
    ) -> None:
        super().__init__(runner)
        self._dataloader = dataloader
        self._evaluator_cfg = evaluator
        self._evaluator: Any = _UNBUILT
        self.fast_path = self.default_fast_path if fast_path is None else bool(fast_path)

    def inference_model(self, model: nn.Module) -> nn.Module:
        """The model this pass runs: ``model``, or with ``fast_path`` the inference fast path that
        ``detcore infer`` runs (:func:`detcore.models.fusion.inference_fast_path`: Conv-BN folded into a
        copy where exact within float tolerance, channels-last weights, the run's precision)."""
        if not self.fast_path:
            return model
        from detcore.models.fusion import inference_fast_path

        self._restore_precision = getattr(model, "precision", "fp32")
        runner = self.runner
        return inference_fast_path(model, runner.precision, runner.device, where=f"{self.split} loop")

    def release_inference_model(self, run_model: nn.Module, model: nn.Module) -> None:
        """Undo :meth:`inference_model` on ``model`` (its layout, when nothing was folded into a copy)."""
        if self.fast_path and run_model is model:
            from detcore.models.precision import set_precision

            set_precision(model, self._restore_precision, self.runner.device)

    @property
    def dataloader(self) -> Any:
        return self._dataloader if self._dataloader is not None else self.runner.dataloader(self.split)

    @property
    def evaluator(self) -> Any | None:
        if self._evaluator is _UNBUILT:
            from detcore.registry import build

            cfg = self.runner.cfg
            table = self._evaluator_cfg
            where = f"{self.split}_loop.evaluator"
            if table is None:
                where = f"{self.split}_evaluator" if cfg.get(f"{self.split}_evaluator") else "evaluator"
                table = cfg.get(where)
            self._evaluator = (
                build("metric", table, where=where, dataset=self.dataloader.dataset) if table else None
            )
        return self._evaluator

    @torch.no_grad()
    def run(self) -> dict[str, float]:
        runner, event = self.runner, self.split
        loader = self.dataloader
        metric = self.evaluator
        model = runner.unwrapped_model
        was_training = model.training
        model.eval()
        if metric is not None and hasattr(metric, "results"):
            metric.results.clear()
        rng = get_rng_state()
        before_iter = getattr(runner.call, f"before_{event}_iter")
        after_iter = getattr(runner.call, f"after_{event}_iter")
        getattr(runner.call, f"before_{event}_epoch")(runner=runner)
        run_model = self.inference_model(model)  # after the epoch hooks (EMA swaps its weights in there)
        for idx, batch in enumerate(loader):
            if not batch.get("img_metas"):  # every image of the batch was unreadable (reported below)
                continue
            before_iter(runner=runner, batch_idx=idx, batch=batch)
            batch = to_device(batch, runner.device)
            with runner.autocast():
                outputs = run_model(**batch)
            if metric is not None:
                metric.process(batch["img_metas"], outputs)
            after_iter(runner=runner, batch_idx=idx, batch=batch, outputs=outputs)
        self.release_inference_model(run_model, model)
        metrics: dict[str, float] = {}
        if metric is not None:
            results = dist_utils.collect_results(metric.results, len(loader.dataset))
            if runner.rank == 0:
                metrics = dict(metric.compute(results))
            metrics = dist_utils.broadcast_object(metrics)
        _report_bad_data(loader, runner, self.split)
        getattr(runner.call, f"after_{event}_epoch")(runner=runner, metrics=metrics)
        model.train(was_training)
        set_rng_state(rng)
        return metrics


class ValLoop(EvalLoop):
    """Validation over ``data.val`` (``val`` events), run by the evaluation hook and after training."""

    split = "val"


class TestLoop(EvalLoop):
    """A test-only pass over ``data.test`` (``test`` events)."""

    __test__ = False  # not a pytest test class
    split = "test"
    default_fast_path = True


LOOPS: dict[str, type[BaseLoop]] = {
    "EpochBasedTrainLoop": EpochBasedTrainLoop,
    "IterBasedTrainLoop": IterBasedTrainLoop,
    "ValLoop": ValLoop,
    "TestLoop": TestLoop,
}
