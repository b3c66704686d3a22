"""Normalisation layers named by ``norm_cfg`` tables, and the frozen batch norm."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from detcore.models.layers._lookup import check_cfg, layer_factory


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all stored as buffers.

    Its state-dict keys (``weight``, ``bias``, ``running_mean``, ``running_var``) are those of
    ``nn.BatchNorm2d`` minus ``num_batches_tracked`` (which is accepted and ignored on load), so
    checkpoints written with ordinary batch norm load into it.
    """

    _abbr_ = "bn"

    def __init__(self, num_features: int, eps: float = 1e-5, **_ignored: Any) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):  # noqa: ANN001
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)


def is_norm(module: nn.Module, exclude: type | tuple[type, ...] | None = None) -> bool:
    """True if ``module`` is a normalisation layer (BN, SyncBN, GN, LN, IN, FrozenBN), not of ``exclude``."""
    if exclude is not None and isinstance(module, exclude):
        return False
    return isinstance(module, NORM_TYPES)


def infer_abbr(cls: type) -> str:
    """The short name of a norm class used in attribute names (``bn``, ``gn``, ``ln``, ``in``)."""
    if not inspect.isclass(cls):
        raise TypeError(f"norm layer factory must be a class to name it, got {cls!r}")
    if hasattr(cls, "_abbr_"):
        return cls._abbr_
    if issubclass(cls, _InstanceNorm):
        return "in"
    if issubclass(cls, _BatchNorm):
        return "bn"
    if issubclass(cls, nn.GroupNorm):
        return "gn"
    if issubclass(cls, nn.LayerNorm):
        return "ln"
    name = cls.__name__.lower()
    for key, abbr in (("batch", "bn"), ("group", "gn"), ("layer", "ln"), ("instance", "in")):
        if key in name:
            return abbr
    return "norm_layer"


def build_norm_layer(cfg: dict, num_features: int, postfix: int | str = "") -> tuple[str, nn.Module]:
    """Build a normalisation layer from a ``norm_cfg`` table.

    ``cfg["type"]``: ``BN``/``BN2d``/``BN1d``/``BN3d``, ``SyncBN``, ``GN`` (needs ``num_groups``),
    ``LN``, ``IN``/``IN1d``/``IN2d``/``IN3d``, ``FrozenBN``. ``requires_grad`` (default True) sets the
    parameters' flag; other keys (``eps``, ``momentum``, ``affine``) go to the layer.
    Returns ``(name, layer)`` with name = abbreviation + postfix, e.g. ``("bn1", BatchNorm2d)``.
    """
    cfg = check_cfg(cfg, "norm_cfg")
    layer_type = cfg.pop("type")
    factory = layer_factory(layer_type, "norm_cfg")
    name = infer_abbr(factory) + str(postfix)
    requires_grad = cfg.pop("requires_grad", True)
    cfg.setdefault("eps", 1e-5)
    if issubclass(factory, nn.GroupNorm):
        if "num_groups" not in cfg:
            raise KeyError(f"norm_cfg of type '{layer_type}' needs 'num_groups'; got {sorted(cfg)}")
        layer = factory(num_channels=num_features, **cfg)
    elif issubclass(factory, nn.LayerNorm):
        layer = factory(num_features, **cfg)
    else:
        layer = factory(num_features, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return name, layer
