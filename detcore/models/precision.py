"""Compute precision of a detector: ``"fp32"`` or ``"bf16"`` (bfloat16 convolutions and linears).

In ``"bf16"`` the heavy modules run under ``torch.autocast(dtype=bfloat16)`` in channels-last layout:
the backbone, the neck, the dense heads and the RoI heads' box/mask/semantic branches. Everything around
them stays float32: the heads' raw outputs are cast to float32 (contiguous NCHW) where post-processing
starts, so anchors/points, box decoding and clipping, score thresholds, NMS, RoI coordinates, mask
pasting and losses see float32 and every output of an inference is float32. The parameters (an
optimizer's master weights) stay float32; autocast only casts copies.

The regions are forward hooks on those modules (:func:`set_precision`), so any detector built from a
backbone, a neck and heads gets them without code of its own, in inference and in training. Feature maps
between the backbone, the neck and the heads stay bfloat16 (a head casts its inputs anyway).

bf16 runs only where the hardware computes it natively (:func:`bf16_supported`: AVX-512 BF16 or AMX on a
CPU, a bf16-capable GPU); elsewhere :func:`resolve_precision` warns and falls back to ``"fp32"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
#: names of the detector parts whose outputs are features (stay in the compute dtype)
FEATURE_PARTS = ("backbone", "neck")


class PrecisionFallbackWarning(UserWarning):
    """bf16 was asked for on hardware without native bfloat16 arithmetic; fp32 runs instead."""


def check_precision(value: Any, where: str = "precision") -> str:
    """``value`` as one of :data:`PRECISIONS` (``None`` -> ``"fp32"``); anything else is a ``ValueError``."""
    if value is None:
        return "fp32"
    if not isinstance(value, str) or value.lower() not in PRECISIONS:
        raise ValueError(f"{where}: precision must be one of {list(PRECISIONS)}, got {value!r}")
    return value.lower()


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 convolutions/matmuls natively (not emulated in fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
        torch.cpu, "_is_amx_tile_supported", lambda: False
    )()
    return bool(native and torch.backends.mkldnn.is_available())


def resolve_precision(value: Any, device: str | torch.device = "cpu", where: str = "precision") -> str:
    """The precision that will run: ``value`` checked, ``"bf16"`` -> ``"fp32"`` (with a
    :class:`PrecisionFallbackWarning`) where ``device`` lacks native bfloat16."""
    precision = check_precision(value, where)
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(
            f"{where}: bf16 was requested but {torch.device(device)} has no native bfloat16 arithmetic "
            "(a CPU needs AVX-512 BF16 or AMX, a GPU bf16 support); running in fp32",
            PrecisionFallbackWarning,
            stacklevel=3,
        )
        return "fp32"
    return precision


def to_float32(obj: Any) -> Any:
    """``obj`` with every floating tensor in float32 and NCHW-contiguous (tuples, lists and dicts are
    walked); float32 contiguous tensors and non-tensors come back as they are."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and (obj.dtype != torch.float32 or not obj.is_contiguous()):
            return obj.to(torch.float32, memory_format=torch.contiguous_format)
        return obj
    if isinstance(obj, tuple):
        items = [to_float32(o) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [to_float32(o) for o in obj]
    if isinstance(obj, dict):
        return {k: to_float32(v) for k, v in obj.items()}
    return obj


class _Region:
    """Forward hooks that run a module under autocast (``dtype``, or none) and, for a head, hand its
    outputs back as float32 contiguous tensors. Picklable and copyable with the model (EMA copies)."""

    def __init__(self, device_type: str, dtype: torch.dtype | None, channels_last_input: bool,
                 cast_outputs: bool, outer: bool = False) -> None:
        self.device_type, self.dtype, self.outer = device_type, dtype, outer
        self.channels_last_input, self.cast_outputs = channels_last_input, cast_outputs
        self._active: list[Any] = []

    def __deepcopy__(self, memo: dict) -> _Region:
        return _Region(self.device_type, self.dtype, self.channels_last_input, self.cast_outputs, self.outer)

    def before(self, module: nn.Module, args: tuple) -> tuple | None:
        if self.outer:  # autocast off around the whole forward: its bf16 weight casts are cached until
            ctx = torch.autocast(self.device_type, enabled=False)  # the end, not redone per region/level
        elif self.dtype is not None:
            ctx = torch.autocast(self.device_type, dtype=self.dtype)
        else:
            ctx = None
        if ctx is not None:
            ctx.__enter__()
        self._active.append(ctx)
        if self.channels_last_input and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        return None

    def after(self, module: nn.Module, args: tuple, output: Any) -> Any:
        ctx = self._active.pop() if self._active else None
        if ctx is not None:
            ctx.__exit__(None, None, None)
        return to_float32(output) if self.cast_outputs and output is not None else None


def compute_parts(model: nn.Module) -> Iterator[tuple[str, nn.Module, bool]]:
    """``(name, module, is_head)`` of the modules that carry a detector's compute: ``backbone`` and
    ``neck`` (features), every other direct child as a head, except that a RoI head (a child with
    ``predict_bbox`` or a ``bbox_head`` child) contributes its branches (RoI extractors excluded: the
    ops pool in float32 themselves). Heads in ``nn.ModuleList`` / ``ModuleDict`` count one by one."""
    for name, child in model.named_children():
        if name in FEATURE_PARTS:
            yield name, child, False
        elif hasattr(child, "predict_bbox") or isinstance(getattr(child, "bbox_head", None), nn.Module):
            for sub_name, sub in child.named_children():
                if "roi_extractor" not in sub_name:
                    yield from _each(f"{name}.{sub_name}", sub)
        else:
            yield from _each(name, child)


def _each(name: str, module: nn.Module) -> Iterator[tuple[str, nn.Module, bool]]:
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        items = module.items() if isinstance(module, nn.ModuleDict) else enumerate(module)
        for key, sub in items:
            yield from _each(f"{name}.{key}", sub)
    else:
        yield name, module, True


def set_precision(
    model: nn.Module,
    precision: Any = "fp32",
    device: str | torch.device | None = None,
    channels_last: bool | None = None,
    where: str = "precision",
) -> str:
    """Make ``model`` (a detector) compute in ``precision``; returns the precision that runs.

    ``"bf16"`` installs autocast regions on :func:`compute_parts` and puts the weights in channels-last
    layout. ``channels_last`` (default: on for bf16, off for fp32) chooses the layout; with it the heads'
    outputs come back contiguous. Calling again replaces the previous setting; ``"fp32"`` without
    channels-last leaves the model exactly as built. Sets ``model.precision``.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    resolved = resolve_precision(precision, device, where)
    for handle in getattr(model, "_precision_handles", ()):
        handle.remove()
    model._precision_handles = []
    use_cl = resolved == "bf16" if channels_last is None else bool(channels_last)
    dtype = torch.bfloat16 if resolved == "bf16" else None
    if dtype is not None or use_cl:
        device_type = torch.device(device).type
        if dtype is not None:
            outer = _Region(device_type, None, False, cast_outputs=False, outer=True)
            model._precision_handles.append(model.register_forward_pre_hook(outer.before))
            model._precision_handles.append(model.register_forward_hook(outer.after, always_call=True))
        for name, module, is_head in compute_parts(model):
            region = _Region(device_type, dtype, use_cl and name == "backbone", cast_outputs=is_head)
            model._precision_handles.append(module.register_forward_pre_hook(region.before))
            model._precision_handles.append(module.register_forward_hook(region.after, always_call=True))
    model.to(memory_format=torch.channels_last if use_cl else torch.contiguous_format)
    model.precision = resolved
    return resolved


def precision_of(cfg: Mapping[str, Any] | None, override: Any = None) -> str:
    """The precision a run asks for: ``override`` if given, else the config's top-level ``precision``."""
    if override is not None:
        return check_precision(override, "--precision")
    value = cfg.get("precision") if cfg is not None else None
    return check_precision(value, "config key 'precision'")
