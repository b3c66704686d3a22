"""Hook specifications: the contracts between the detcore kernel and its plugins.

There are two families of hooks.

*Component hooks* are called once, on the process-wide plugin manager, when the component registry
is built. Each returns a mapping ``name -> factory``; a factory is any callable (usually a class)
whose keyword arguments are the keys of the config table that builds it. Every hook is optional: a
plugin implements only the kinds it offers.

*Run events* fire during a training or evaluation run on a plugin manager that the run owns; the
run's hook objects (checkpointing, logging, evaluation, EMA, ...) implement them. Every event
receives the ``runner`` and may take fewer arguments than the spec lists (pluggy passes only the
names an implementation asks for).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pluggy

PROJECT = "detcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Factory = Callable[..., Any]

# --------------------------------------------------------------------------------------------------
# Component hooks. The kind name used by the registry is the part after ``detcore_register_``,
# singular (``backbones`` -> ``backbone``); see COMPONENT_KINDS below.
# --------------------------------------------------------------------------------------------------


@hookspec
def detcore_register_backbones() -> Mapping[str, Factory]:
    """Backbones: feature extractors. Return ``{name: factory}``.

    A built backbone is an ``nn.Module`` mapping images ``(B, 3, H, W)`` to a tuple of feature maps,
    one per entry of its ``out_indices``, from high to low resolution.
    """


@hookspec
def detcore_register_necks() -> Mapping[str, Factory]:
    """Necks: modules between backbone and heads (FPN, PAFPN, ...). Return ``{name: factory}``.

    A built neck maps a tuple of feature maps to a tuple of feature maps.
    """


@hookspec
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    """Dense heads: per-location heads (RPN, RetinaNet, FCOS, SSD heads). Return ``{name: factory}``.

    A built dense head takes the neck's feature maps and computes losses (train) or instances (test).
    """


@hookspec
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    """RoI heads and their sub-heads (bbox heads, mask heads, semantic heads). Return ``{name: factory}``."""


@hookspec
def detcore_register_roi_extractors() -> Mapping[str, Factory]:
    """RoI feature extractors (e.g. single-level RoIAlign over FPN levels). Return ``{name: factory}``."""


@hookspec
def detcore_register_losses() -> Mapping[str, Factory]:
    """Loss modules, each with ``loss_weight`` and ``reduction``. Return ``{name: factory}``."""


@hookspec
def detcore_register_detectors() -> Mapping[str, Factory]:
    """Whole detectors (the ``[model]`` table's ``type``). Return ``{name: factory}``.

    A built detector is an ``nn.Module``; in train mode its forward returns a dict of named losses,
    in eval mode one instances object per image in original-image coordinates.
    """


@hookspec
def detcore_register_datasets() -> Mapping[str, Factory]:
    """Datasets and dataset wrappers. Return ``{name: factory}``.

    A built dataset is a map-style dataset whose items are samples (dicts) after its pipeline.
    """


@hookspec
def detcore_register_transforms() -> Mapping[str, Factory]:
    """Data-pipeline transforms. Return ``{name: factory}``.

    A built transform is a callable ``sample -> sample`` (or ``None`` to drop the sample).
    """


@hookspec
def detcore_register_metrics() -> Mapping[str, Factory]:
    """Evaluation metrics (COCO, VOC, proposal recall, ...). Return ``{name: factory}``."""


@hookspec
def detcore_register_run_hooks() -> Mapping[str, Factory]:
    """Run hooks: objects implementing run events (checkpoint, logger, EMA, ...). Return ``{name: factory}``.

    Configs add them by name in ``custom_hooks``; the run registers each on its own plugin manager.
    """


@hookspec
def detcore_register_task_utils() -> Mapping[str, Factory]:
    """Task utilities: assigners, samplers, box coders, prior generators, IoU calculators.

    Return ``{name: factory}``.
    """


@hookspec
def detcore_register_layers() -> Mapping[str, Factory]:
    """Layers named in ``conv_cfg``, ``norm_cfg``, ``act_cfg`` and ``upsample_cfg`` tables.

    Return ``{name: factory}``.
    """


@hookspec
def detcore_register_optimizers() -> Mapping[str, Factory]:
    """Optimizers (``factory(params, **cfg)``). Return ``{name: factory}``."""


@hookspec
def detcore_register_schedulers() -> Mapping[str, Factory]:
    """Learning-rate and momentum schedules. Return ``{name: factory}``."""


#: registry kind -> the hook that fills it
COMPONENT_KINDS: dict[str, str] = {
    "backbone": "detcore_register_backbones",
    "neck": "detcore_register_necks",
    "dense_head": "detcore_register_dense_heads",
    "roi_head": "detcore_register_roi_heads",
    "roi_extractor": "detcore_register_roi_extractors",
    "loss": "detcore_register_losses",
    "detector": "detcore_register_detectors",
    "dataset": "detcore_register_datasets",
    "transform": "detcore_register_transforms",
    "metric": "detcore_register_metrics",
    "run_hook": "detcore_register_run_hooks",
    "task_util": "detcore_register_task_utils",
    "layer": "detcore_register_layers",
    "optimizer": "detcore_register_optimizers",
    "scheduler": "detcore_register_schedulers",
}


# --------------------------------------------------------------------------------------------------
# Run events, fired by the engine on the run's own plugin manager. ``runner`` is the running
# ``detcore.engine.Runner``; its ``epoch``/``iter`` counters are the ones *before* the step.
# --------------------------------------------------------------------------------------------------


class RunEventSpecs:
    """The training-loop events. Hook objects implement any subset of these methods."""

    @hookspec
    def before_run(self, runner: Any) -> None:
        """Once, after the model, data and optimizer are built and a checkpoint is resumed."""

    @hookspec
    def after_run(self, runner: Any) -> None:
        """Once, when the run ends normally."""

    @hookspec
    def before_train_epoch(self, runner: Any) -> None:
        """At the start of each training epoch (iteration-based runs: of each pass over the data)."""

    @hookspec
    def after_train_epoch(self, runner: Any) -> None:
        """At the end of each training epoch."""

    @hookspec
    def before_train_iter(self, runner: Any, batch_idx: int, batch: Any) -> None:
        """Before the forward pass of a training iteration; ``batch`` is the collated batch."""

    @hookspec
    def after_train_iter(self, runner: Any, batch_idx: int, batch: Any, outputs: dict) -> None:
        """After the forward pass; ``outputs`` holds ``loss`` (the total) and ``log_vars`` (floats).

        The optimizer hook steps here; hooks that read updated weights should run at lower priority.
        """

    @hookspec
    def before_val_epoch(self, runner: Any) -> None:
        """Before a validation pass."""

    @hookspec
    def after_val_epoch(self, runner: Any, metrics: dict) -> None:
        """After a validation pass; ``metrics`` maps metric names to floats."""

    @hookspec
    def before_val_iter(self, runner: Any, batch_idx: int, batch: Any) -> None:
        """Before the forward pass of a validation iteration."""

    @hookspec
    def after_val_iter(self, runner: Any, batch_idx: int, batch: Any, outputs: list) -> None:
        """After a validation iteration; ``outputs`` are the predicted instances, one per image."""

    @hookspec
    def before_test_epoch(self, runner: Any) -> None:
        """Before a test-only pass."""

    @hookspec
    def after_test_epoch(self, runner: Any, metrics: dict) -> None:
        """After a test-only pass; ``metrics`` maps metric names to floats."""

    @hookspec
    def before_test_iter(self, runner: Any, batch_idx: int, batch: Any) -> None:
        """Before the forward pass of a test iteration."""

    @hookspec
    def after_test_iter(self, runner: Any, batch_idx: int, batch: Any, outputs: list) -> None:
        """After a test iteration; ``outputs`` are the predicted instances, one per image."""

    @hookspec
    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Before a checkpoint dict is written; hooks may add entries (e.g. EMA weights)."""

    @hookspec
    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """After a checkpoint was loaded to resume a run; hooks restore what they added."""


RUN_EVENTS: tuple[str, ...] = tuple(name for name in vars(RunEventSpecs) if not name.startswith("_"))
