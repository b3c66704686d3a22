"""Hook specifications: the contracts between the detcore kernel and its plugins.

There are two families of hooks.

*Component hooks* are called once per registry build (the first ``detcore.build`` of a process, or
after :func:`detcore.plugins.reset_plugin_manager`), on the process-wide plugin manager, one plugin
at a time. Each returns a mapping ``name -> factory``; a factory is any callable (usually a class)
whose keyword arguments are the keys of the config table that builds it. The results combine by
name: every plugin's table is merged into the registry's table of that kind, each entry remembering
its plugin; a name two plugins offer must then be written ``"plugin:Name"``. Every hook is optional
(a plugin implements only the kinds it offers); returning ``None`` or ``{}`` offers nothing. A plugin
whose hook raises, or returns something other than a mapping, is marked failed and offers nothing.
An ``@hookimpl`` whose name matches no spec here refuses its plugin when it loads.

*Run events* fire during a training or evaluation run on a plugin manager that the run owns
(:class:`detcore.engine.RunHookManager`); the run's hook objects (checkpointing, logging, evaluation,
EMA, a plugin's own hooks, ...) implement them, with or without ``@hookimpl``. Every implementation
is called, in priority order (smaller first, ties in registration order); their return values are
ignored, so hooks communicate through the ``runner`` and the mutable arguments (``outputs``,
``checkpoint``). An implementation may take fewer arguments than the spec lists (pluggy passes only
the names it asks for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import pluggy

if TYPE_CHECKING:
    from detcore.engine.runner import Runner
    from detcore.structures.instances import Instances

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

    Called once per registry build; every plugin's table merges into the registry's ``backbone`` kind.
    """


@hookspec
def detcore_register_necks() -> Mapping[str, Factory]:
    """Necks: modules between backbone and heads (FPN, PAFPN, ...). Return ``{name: factory}``.

    A built neck maps a tuple of feature maps to a tuple of feature maps.

    Called once per registry build; every plugin's table merges into the registry's ``neck`` kind.
    """


@hookspec
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    """Dense heads: per-location heads (RPN, RetinaNet, FCOS, SSD heads). Return ``{name: factory}``.

    A built dense head takes the neck's feature maps and computes losses (train) or instances (test).

    Called once per registry build; every plugin's table merges into the registry's ``dense_head`` kind.
    """


@hookspec
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    """RoI heads and their sub-heads (bbox heads, mask heads, semantic heads). Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``roi_head`` kind.
    """


@hookspec
def detcore_register_roi_extractors() -> Mapping[str, Factory]:
    """RoI feature extractors (e.g. single-level RoIAlign over FPN levels). Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``roi_extractor`` kind.
    """


@hookspec
def detcore_register_roi_layers() -> Mapping[str, Factory]:
    """RoI pooling layers named by an extractor's ``roi_layer`` table (RoIAlign, RoIPool, ...).

    Return ``{name: factory}``; a factory takes the table's keys plus ``spatial_scale`` and its module
    maps ``(features (B, C, H, W), rois (K, 5))`` to ``(K, C, out_h, out_w)``.

    Called once per registry build; every plugin's table merges into the registry's ``roi_layer`` kind.
    """


@hookspec
def detcore_register_losses() -> Mapping[str, Factory]:
    """Loss modules, each with ``loss_weight`` and ``reduction``. Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``loss`` kind.
    """


@hookspec
def detcore_register_detectors() -> Mapping[str, Factory]:
    """Whole detectors (the ``[model]`` table's ``type``). Return ``{name: factory}``.

    A built detector is an ``nn.Module``; in train mode its forward returns a dict of named losses,
    in eval mode one instances object per image in original-image coordinates.

    Called once per registry build; every plugin's table merges into the registry's ``detector`` kind.
    """


@hookspec
def detcore_register_datasets() -> Mapping[str, Factory]:
    """Datasets and dataset wrappers. Return ``{name: factory}``.

    A built dataset is a map-style dataset whose items are samples (dicts) after its pipeline.

    Called once per registry build; every plugin's table merges into the registry's ``dataset`` kind.
    """


@hookspec
def detcore_register_transforms() -> Mapping[str, Factory]:
    """Data-pipeline transforms. Return ``{name: factory}``.

    A built transform is a callable ``sample -> sample`` (or ``None`` to drop the sample).

    Called once per registry build; every plugin's table merges into the registry's ``transform`` kind.
    """


@hookspec
def detcore_register_metrics() -> Mapping[str, Factory]:
    """Evaluation metrics (COCO, VOC, proposal recall, ...). Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``metric`` kind.
    """


@hookspec
def detcore_register_run_hooks() -> Mapping[str, Factory]:
    """Run hooks: objects implementing run events (checkpoint, logger, EMA, ...). Return ``{name: factory}``.

    Configs add them by name in ``custom_hooks``; the run registers each on its own plugin manager.

    Called once per registry build; every plugin's table merges into the registry's ``run_hook`` kind.
    """


@hookspec
def detcore_register_loops() -> Mapping[str, Factory]:
    """Run loops: training (the ``[runner]`` table), validation and test loops. Return ``{name: factory}``.

    A factory takes the ``runner`` plus its table's keys; the built loop's ``run()`` iterates and
    fires the run events (see ``detcore.engine.loops``).

    Called once per registry build; every plugin's table merges into the registry's ``loop`` kind.
    """


@hookspec
def detcore_register_task_utils() -> Mapping[str, Factory]:
    """Task utilities: assigners, samplers, box coders, prior generators, IoU calculators.

    Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``task_util`` kind.
    """


@hookspec
def detcore_register_layers() -> Mapping[str, Factory]:
    """Layers named in ``conv_cfg``, ``norm_cfg``, ``act_cfg`` and ``upsample_cfg`` tables.

    Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``layer`` kind.
    """


@hookspec
def detcore_register_optimizers() -> Mapping[str, Factory]:
    """Optimizers (``factory(params, **cfg)``). Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``optimizer`` kind.
    """


@hookspec
def detcore_register_schedulers() -> Mapping[str, Factory]:
    """Learning-rate and momentum schedules. Return ``{name: factory}``.

    Called once per registry build; every plugin's table merges into the registry's ``scheduler`` kind.
    """


#: registry kind -> the hook that fills it
COMPONENT_KINDS: dict[str, str] = {
    "backbone": "detcore_register_backbones",
    "neck": "detcore_register_necks",
    "dense_head": "detcore_register_dense_heads",
    "roi_head": "detcore_register_roi_heads",
    "roi_extractor": "detcore_register_roi_extractors",
    "roi_layer": "detcore_register_roi_layers",
    "loss": "detcore_register_losses",
    "detector": "detcore_register_detectors",
    "dataset": "detcore_register_datasets",
    "transform": "detcore_register_transforms",
    "metric": "detcore_register_metrics",
    "run_hook": "detcore_register_run_hooks",
    "loop": "detcore_register_loops",
    "task_util": "detcore_register_task_utils",
    "layer": "detcore_register_layers",
    "optimizer": "detcore_register_optimizers",
    "scheduler": "detcore_register_schedulers",
}


# --------------------------------------------------------------------------------------------------
# Run events, fired by the engine on the run's own plugin manager. ``runner`` is the running
# ``detcore.engine.Runner``; its ``epoch``/``iter`` counters are the ones *before* the step. Every
# hook implementing an event is called, in priority order; return values are ignored.
# --------------------------------------------------------------------------------------------------


class RunEventSpecs:
    """The run events. Hook objects implement any subset of these methods (see the module docstring)."""

    @hookspec
    def before_run(self, runner: Runner) -> None:
        """Once per ``train()`` / ``test()``, after the model, data and optimizer are built and a
        checkpoint is resumed. Every hook, in priority order; results ignored."""

    @hookspec
    def after_run(self, runner: Runner) -> None:
        """Once, when the run ends normally (not after an exception). Every hook; results ignored."""

    @hookspec
    def before_train_epoch(self, runner: Runner) -> None:
        """At the start of each training epoch (iteration-based runs: of each pass over the data).
        Every hook, in priority order; results ignored."""

    @hookspec
    def after_train_epoch(self, runner: Runner) -> None:
        """At the end of each training epoch, before validation. Every hook; results ignored."""

    @hookspec
    def before_train_iter(self, runner: Runner, batch_idx: int, batch: dict[str, Any]) -> None:
        """Before the forward pass of a training iteration; ``batch`` is the collated batch.
        Every hook, in priority order; results ignored."""

    @hookspec
    def after_train_iter(
        self, runner: Runner, batch_idx: int, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        """After the forward pass; ``outputs`` holds ``loss`` (the total, a tensor) and ``log_vars``
        (name -> float). Every hook, in priority order; results ignored.

        The optimizer hook steps here; hooks that read updated weights should run at lower priority.
        """

    @hookspec
    def before_val_epoch(self, runner: Runner) -> None:
        """Before a validation pass. Every hook, in priority order; results ignored."""

    @hookspec
    def after_val_epoch(self, runner: Runner, metrics: dict[str, float]) -> None:
        """After a validation pass; ``metrics`` maps metric names to floats. Every hook, in priority
        order; results ignored (a hook may add entries to ``metrics`` for the hooks after it)."""

    @hookspec
    def before_val_iter(self, runner: Runner, batch_idx: int, batch: dict[str, Any]) -> None:
        """Before the forward pass of a validation iteration. Every hook; results ignored."""

    @hookspec
    def after_val_iter(
        self, runner: Runner, batch_idx: int, batch: dict[str, Any], outputs: list[Instances]
    ) -> None:
        """After a validation iteration; ``outputs`` are the predicted instances, one per image, in
        original-image coordinates. Every hook, in priority order; results ignored."""

    @hookspec
    def before_test_epoch(self, runner: Runner) -> None:
        """Before a test-only pass (``Runner.test``). Every hook, in priority order; results ignored."""

    @hookspec
    def after_test_epoch(self, runner: Runner, metrics: dict[str, float]) -> None:
        """After a test-only pass; ``metrics`` maps metric names to floats. Every hook; results ignored."""

    @hookspec
    def before_test_iter(self, runner: Runner, batch_idx: int, batch: dict[str, Any]) -> None:
        """Before the forward pass of a test iteration. Every hook, in priority order; results ignored."""

    @hookspec
    def after_test_iter(
        self, runner: Runner, batch_idx: int, batch: dict[str, Any], outputs: list[Instances]
    ) -> None:
        """After a test iteration; ``outputs`` are the predicted instances, one per image, in
        original-image coordinates. Every hook, in priority order; results ignored."""

    @hookspec
    def before_save_checkpoint(self, runner: Runner, checkpoint: dict[str, Any]) -> None:
        """Before a checkpoint dict is written. Every hook, in priority order, may add entries to
        ``checkpoint`` (e.g. EMA weights); results ignored."""

    @hookspec
    def after_load_checkpoint(self, runner: Runner, checkpoint: dict[str, Any]) -> None:
        """After a checkpoint was loaded to resume a run. Every hook, in priority order, restores what
        it added in ``before_save_checkpoint``; results ignored."""


RUN_EVENTS: tuple[str, ...] = tuple(name for name in vars(RunEventSpecs) if not name.startswith("_"))
