"""Optimizers from config tables, with per-parameter options.

``[optimizer]`` holds ``type`` (``SGD``, ``Adam``, ``AdamW`` or any optimizer a plugin registers),
the optimizer's arguments, and ``paramwise_cfg``:

- ``norm_decay_mult`` / ``bias_decay_mult``: weight-decay multipliers of normalisation-layer
  parameters and of other biases (0 turns weight decay off for them);
- ``bias_lr_mult``: learning-rate multiplier of biases;
- ``custom_keys = {pattern = {lr_mult = .., decay_mult = ..}}``: multipliers for parameters whose
  name contains the pattern (or matches it as a glob when it has ``*``/``?``); the longest matching
  pattern wins and takes precedence over the norm/bias rules.

Parameters with ``requires_grad = False`` are not given to the optimizer. Parameters with equal
options share one group; each group records ``param_names``, ``lr_mult`` and ``decay_mult``.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping

import torch
from torch import nn

from detcore.errors import ConfigError

NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
PARAMWISE_KEYS = {"norm_decay_mult", "bias_decay_mult", "bias_lr_mult", "custom_keys"}


# -- the registered factories (their signatures are what configs are validated against) ---------------


def SGD(  # noqa: N802 - named as the config's type
    params: Any,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
    paramwise_cfg: dict | None = None,
) -> torch.optim.Optimizer:
    """torch.optim.SGD; ``paramwise_cfg`` is applied by :func:`build_optimizer` before this is called."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening
    )


def Adam(  # noqa: N802
    params: Any,
    lr: float = 1e-3,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    paramwise_cfg: dict | None = None,
) -> torch.optim.Optimizer:
    """torch.optim.Adam."""
    return torch.optim.Adam(
        params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


def AdamW(  # noqa: N802
    params: Any,
    lr: float = 1e-3,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    paramwise_cfg: dict | None = None,
) -> torch.optim.Optimizer:
    """torch.optim.AdamW."""
    return torch.optim.AdamW(
        params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
    )


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


# -- parameter groups ---------------------------------------------------------------------------------


def _match_key(name: str, patterns: list[str]) -> str | None:
    hits = [
        p for p in patterns if (fnmatch.fnmatchcase(name, p) if any(c in p for c in "*?[") else p in name)
    ]
    return max(hits, key=len) if hits else None


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, paramwise_cfg: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Parameter groups of ``model`` under ``paramwise_cfg``; see the module docstring."""
    cfg = dict(paramwise_cfg or {})
    unknown = set(cfg) - PARAMWISE_KEYS
    if unknown:
        raise ConfigError(
            f"optimizer.paramwise_cfg: unknown key(s) {sorted(unknown)}; valid: {sorted(PARAMWISE_KEYS)}"
        )
    custom = dict(cfg.get("custom_keys", {}))
    for key, opts in custom.items():
        if not isinstance(opts, Mapping) or set(opts) - {"lr_mult", "decay_mult"}:
            raise ConfigError(
                f"optimizer.paramwise_cfg.custom_keys.{key}: expected a table of lr_mult and/or decay_mult, "
                f"got {opts!r}"
            )
    patterns = list(custom)
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for pname, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{pname}" if module_name else pname
            lr_mult, decay_mult = 1.0, 1.0
            key = _match_key(name, patterns)
            if key is not None:
                lr_mult = float(custom[key].get("lr_mult", 1.0))
                decay_mult = float(custom[key].get("decay_mult", 1.0))
            elif is_norm:
                decay_mult = float(cfg.get("norm_decay_mult", 1.0))
            elif pname == "bias":
                decay_mult = float(cfg.get("bias_decay_mult", 1.0))
                lr_mult = float(cfg.get("bias_lr_mult", 1.0))
            group = groups.setdefault(
                (lr_mult, decay_mult),
                {
                    "params": [],
                    "param_names": [],
                    "lr": lr * lr_mult,
                    "weight_decay": weight_decay * decay_mult,
                    "lr_mult": lr_mult,
                    "decay_mult": decay_mult,
                },
            )
            group["params"].append(param)
            group["param_names"].append(name)
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of an ``[optimizer]`` table for ``model`` (DDP wrappers are unwrapped)."""
    from detcore.registry import get_registry

    model = getattr(model, "module", model)
    args = dict(cfg)
    if "type" not in args:
        raise ConfigError(
            f"optimizer: the table needs a 'type' (SGD, Adam, AdamW, ...); keys given: {sorted(args)}"
        )
    if "lr" not in args:
        raise ConfigError("optimizer: the table needs 'lr'")
    entry = get_registry().get("optimizer", args.pop("type"))
    paramwise = args.pop("paramwise_cfg", None)
    groups = param_groups(model, float(args["lr"]), float(args.get("weight_decay", 0.0)), paramwise)
    if not groups:
        raise ConfigError("optimizer: the model has no trainable parameters (all have requires_grad = False)")
    return entry.factory(groups, **args)


def scale_lr(cfg: dict[str, Any], total_batch_size: int, base_batch_size: int) -> float:
    """Linear LR scaling: multiply ``cfg["lr"]`` in place by ``total_batch_size / base_batch_size``."""
    if base_batch_size <= 0:
        raise ConfigError(f"auto_scale_lr.base_batch_size must be positive, got {base_batch_size}")
    cfg["lr"] = float(cfg["lr"]) * total_batch_size / base_batch_size
    return cfg["lr"]
