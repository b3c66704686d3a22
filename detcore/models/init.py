"""Weight initialisation: the functions, ``init_cfg`` tables and :class:`BaseModule`.

An ``init_cfg`` is a table or a list of tables::

    {"type": "Normal", "layer": "Conv2d", "std": 0.01,
     "override": {"type": "Normal", "name": "retina_cls", "std": 0.01, "bias_prob": 0.01}}
    {"type": "Pretrained", "checkpoint": "torchvision://resnet50" | path | URL, "prefix": "backbone."}

``layer`` names module classes (e.g. ``Conv2d``, ``Linear``, ``BatchNorm2d`` or the abbreviations
``Conv``/``BN``/``GN``/``LN``/``IN``) whose weights the table initialises throughout the module;
``override`` tables address direct children by attribute ``name`` and initialise them entirely.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.errors import located

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- plain functions


def _has(module: nn.Module, name: str) -> bool:
    return getattr(module, name, None) is not None and isinstance(getattr(module, name), torch.Tensor)


def constant_init(module: nn.Module, val: float, bias: float = 0) -> None:
    """Fill ``module.weight`` with ``val`` and ``module.bias`` with ``bias`` (where present)."""
    if _has(module, "weight"):
        nn.init.constant_(module.weight, val)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    """Draw ``module.weight`` from N(mean, std**2); fill the bias with ``bias``."""
    if _has(module, "weight"):
        nn.init.normal_(module.weight, mean, std)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def trunc_normal_init(
    module: nn.Module, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, bias: float = 0
) -> None:
    """Truncated normal in ``[a, b]`` for the weight, constant bias."""
    if _has(module, "weight"):
        nn.init.trunc_normal_(module.weight, mean, std, a, b)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def uniform_init(module: nn.Module, a: float = 0, b: float = 1, bias: float = 0) -> None:
    """Draw ``module.weight`` from U(a, b); fill the bias with ``bias``."""
    if _has(module, "weight"):
        nn.init.uniform_(module.weight, a, b)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def xavier_init(module: nn.Module, gain: float = 1, bias: float = 0, distribution: str = "normal") -> None:
    """Xavier/Glorot init of the weight (``distribution`` ``normal`` or ``uniform``), constant bias."""
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"xavier_init: distribution must be 'uniform' or 'normal', got {distribution!r}")
    if _has(module, "weight"):
        if distribution == "uniform":
            nn.init.xavier_uniform_(module.weight, gain=gain)
        else:
            nn.init.xavier_normal_(module.weight, gain=gain)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def kaiming_init(
    module: nn.Module,
    a: float = 0,
    mode: str = "fan_out",
    nonlinearity: str = "relu",
    bias: float = 0,
    distribution: str = "normal",
) -> None:
    """Kaiming/He init of the weight (default fan_out, relu, normal), constant bias."""
    if distribution not in ("uniform", "normal"):
        raise ValueError(f"kaiming_init: distribution must be 'uniform' or 'normal', got {distribution!r}")
    if _has(module, "weight"):
        if distribution == "uniform":
            nn.init.kaiming_uniform_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
        else:
            nn.init.kaiming_normal_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if _has(module, "bias"):
        nn.init.constant_(module.bias, bias)


def caffe2_xavier_init(module: nn.Module, bias: float = 0) -> None:
    """Caffe2's "XavierFill": kaiming uniform with a=1, fan_in, leaky_relu."""
    kaiming_init(module, a=1, mode="fan_in", nonlinearity="leaky_relu", bias=bias, distribution="uniform")


def bias_init_with_prob(prior_prob: float) -> float:
    """The bias whose sigmoid is ``prior_prob``: ``-log((1 - p) / p)``."""
    if not 0 < prior_prob < 1:
        raise ValueError(f"bias_init_with_prob: prior_prob must be in (0, 1), got {prior_prob}")
    return float(-math.log((1 - prior_prob) / prior_prob))


# ---------------------------------------------------------------------------- init_cfg tables

_LAYER_ALIASES = {
    "Conv": ("Conv1d", "Conv2d", "Conv3d"),
    "BN": ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"),
    "GN": ("GroupNorm",),
    "LN": ("LayerNorm",),
    "IN": ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"),
}


def _layer_names(layer: Any) -> set[str]:
    if layer is None:
        return set()
    names = [layer] if isinstance(layer, str) else list(layer)
    out: set[str] = set()
    for name in names:
        out.add(name)
        out.update(_LAYER_ALIASES.get(name, ()))
    return out


def _class_names(module: nn.Module) -> set[str]:
    return {cls.__name__ for cls in type(module).__mro__}


class _Initializer:
    """Applies one table's function to the layers named in ``layer`` (matched against each module's
    class and base-class names), or to every module that has a weight when ``wholemodule``."""

    def __init__(self, layer: Any = None, bias: float = 0, bias_prob: float | None = None) -> None:
        self.layers = _layer_names(layer)
        self.bias = bias_init_with_prob(bias_prob) if bias_prob is not None else bias
        self.wholemodule = False

    def init(self, m: nn.Module) -> None:
        raise NotImplementedError

    def __call__(self, module: nn.Module) -> None:
        for m in module.modules():
            if self.wholemodule or _class_names(m) & self.layers:
                self.init(m)


class _Constant(_Initializer):
    def __init__(self, val: float = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.val = val

    def init(self, m: nn.Module) -> None:
        constant_init(m, self.val, self.bias)


class _Normal(_Initializer):
    def __init__(self, mean: float = 0, std: float = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean, self.std = mean, std

    def init(self, m: nn.Module) -> None:
        normal_init(m, self.mean, self.std, self.bias)


class _TruncNormal(_Initializer):
    def __init__(self, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean, self.std, self.a, self.b = mean, std, a, b

    def init(self, m: nn.Module) -> None:
        trunc_normal_init(m, self.mean, self.std, self.a, self.b, self.bias)


class _Uniform(_Initializer):
    def __init__(self, a: float = 0, b: float = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.a, self.b = a, b

    def init(self, m: nn.Module) -> None:
        uniform_init(m, self.a, self.b, self.bias)


class _Xavier(_Initializer):
    def __init__(self, gain: float = 1, distribution: str = "normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gain, self.distribution = gain, distribution

    def init(self, m: nn.Module) -> None:
        xavier_init(m, self.gain, self.bias, self.distribution)


class _Kaiming(_Initializer):
    def __init__(
        self,
        a: float = 0,
        mode: str = "fan_out",
        nonlinearity: str = "relu",
        distribution: str = "normal",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.a, self.mode, self.nonlinearity, self.distribution = a, mode, nonlinearity, distribution

    def init(self, m: nn.Module) -> None:
        kaiming_init(m, self.a, self.mode, self.nonlinearity, self.bias, self.distribution)


class _Caffe2Xavier(_Kaiming):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(a=1, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform", **kwargs)


class _Pretrained:
    def __init__(
        self, checkpoint: str, prefix: str | None = None, map_location: str = "cpu", strict: bool = False
    ) -> None:
        self.checkpoint, self.prefix, self.map_location, self.strict = (
            checkpoint,
            prefix,
            map_location,
            strict,
        )

    def __call__(self, module: nn.Module) -> None:
        from detcore.models.checkpoint_io import load_checkpoint, load_state_dict, state_dict_from

        if self.prefix is None:
            load_checkpoint(module, self.checkpoint, map_location=self.map_location, strict=self.strict)
            return
        state = state_dict_from(self.checkpoint, map_location=self.map_location)
        prefix = self.prefix if self.prefix.endswith(".") else self.prefix + "."
        selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise KeyError(
                f"Pretrained: no key of checkpoint '{self.checkpoint}' starts with prefix '{prefix}' "
                f"(first keys: {list(state)[:5]})"
            )
        load_state_dict(module, selected, strict=self.strict, source=self.checkpoint)


INITIALIZERS: dict[str, type] = {
    "Constant": _Constant,
    "Normal": _Normal,
    "TruncNormal": _TruncNormal,
    "Uniform": _Uniform,
    "Xavier": _Xavier,
    "Kaiming": _Kaiming,
    "Caffe2Xavier": _Caffe2Xavier,
    "Pretrained": _Pretrained,
}


def _make(cfg: Mapping[str, Any], wholemodule: bool = False) -> Any:
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in INITIALIZERS:
        raise KeyError(f"init_cfg type {kind!r} is unknown; known: {', '.join(INITIALIZERS)}")
    try:
        func = INITIALIZERS[kind](**cfg)
    except TypeError as exc:
        raise TypeError(f"init_cfg {{type = {kind!r}}}: {exc}") from None
    func.wholemodule = wholemodule
    return func


def _apply_override(module: nn.Module, override: Any, parent: Mapping[str, Any]) -> None:
    overrides = [override] if isinstance(override, Mapping) else list(override)
    for ov in overrides:
        ov = dict(ov)
        name = ov.pop("name", None)
        if name is None:
            raise KeyError(f"init_cfg override {ov} needs a 'name' (the child attribute it initialises)")
        if not ov:  # only a name: reuse the parent table's function and arguments
            ov = {k: v for k, v in parent.items() if k != "layer"}
        elif "type" not in ov:
            raise KeyError(f"init_cfg override for '{name}' has arguments {sorted(ov)} but no 'type'")
        if not hasattr(module, name):
            raise AttributeError(
                f"init_cfg override: module {type(module).__name__} has no attribute '{name}'"
            )
        _make(ov, wholemodule=True)(getattr(module, name))


def initialize(module: nn.Module, init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    """Initialise ``module`` with one ``init_cfg`` table or a list of them (see the module docstring).

    A table initialises the modules whose class (or a base class) is named in its ``layer``; without
    ``layer`` it touches nothing itself. Its ``override`` tables then initialise the named children
    entirely (every submodule with a weight); an override with only a ``name`` reuses the table's
    function and arguments.
    """
    cfgs = [init_cfg] if isinstance(init_cfg, Mapping) else list(init_cfg)
    for cfg in cfgs:
        if not isinstance(cfg, Mapping):
            raise TypeError(f"init_cfg must be a table or a list of tables, got {type(cfg).__name__}")
        cfg = dict(copy.deepcopy(cfg))
        override = cfg.pop("override", None)
        _make(cfg)(module)
        if override is not None:
            _apply_override(module, override, cfg)


# ---------------------------------------------------------------------------- BaseModule


class BaseModule(nn.Module):
    """An ``nn.Module`` with an ``init_cfg`` and :meth:`init_weights`.

    ``init_weights()`` applies ``self.init_cfg`` (if any), then calls ``init_weights()`` of every child
    that has one (children initialise themselves after their parent's table, so a child's own
    ``init_cfg`` wins), and marks the module initialised so a second call does nothing.
    """

    def __init__(self, init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        self._is_init = False
        self.init_cfg = copy.deepcopy(init_cfg)

    @property
    def is_init(self) -> bool:
        return self._is_init

    def init_weights(self) -> None:
        if self._is_init:
            return
        pretrained = None
        if self.init_cfg:
            cfgs = [self.init_cfg] if isinstance(self.init_cfg, Mapping) else list(self.init_cfg)
            others = [c for c in cfgs if c.get("type") != "Pretrained"]
            pretrained = [c for c in cfgs if c.get("type") == "Pretrained"]
            if others:
                initialize(self, others)
        for child in self.children():
            if hasattr(child, "init_weights") and not getattr(child, "_is_init", False):
                child.init_weights()
        if pretrained:
            # pretrained weights last, so no child's own init overwrites them
            try:
                initialize(self, pretrained)
            except Exception as exc:  # unreadable / refused checkpoint: say whose init_cfg names it
                located(exc, f"{type(self).__name__} init_cfg (Pretrained)")
                raise
        self._is_init = True


class Sequential(BaseModule, nn.Sequential):
    """``nn.Sequential`` with ``init_cfg``."""

    def __init__(self, *args: nn.Module, init_cfg: Any = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.Sequential.__init__(self, *args)


class ModuleList(BaseModule, nn.ModuleList):
    """``nn.ModuleList`` with ``init_cfg``."""

    def __init__(self, modules: Any = None, init_cfg: Any = None) -> None:
        BaseModule.__init__(self, init_cfg)
        nn.ModuleList.__init__(self, modules)
