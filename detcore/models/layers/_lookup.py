"""Resolve a layer type name (``conv_cfg``/``norm_cfg``/``act_cfg``/``upsample_cfg``) to its factory.

Layer types live in the registry kind ``"layer"``; the kernel's built-in plugin ``detcore.layers`` offers
the standard ones and any plugin may add more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable


def check_cfg(cfg: Any, what: str) -> dict:
    """Copy a layer table, checking that it is a mapping with a ``type`` key."""
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{what} must be a table (dict) with a 'type' key, got {type(cfg).__name__}: {cfg!r}")
    if "type" not in cfg:
        raise KeyError(f"{what} needs a 'type' key; keys given: {sorted(cfg)}")
    return dict(cfg)


def layer_factory(name: str, what: str) -> Callable[..., Any]:
    """The factory registered for layer type ``name`` (bare or ``plugin:Name``)."""
    from detcore.errors import ComponentError
    from detcore.registry import get_registry

    try:
        return get_registry().get("layer", name).factory
    except ComponentError as exc:
        raise ComponentError(f"{what}: {exc}") from None
