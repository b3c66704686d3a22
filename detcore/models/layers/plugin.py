"""Blocks inserted into a backbone's residual blocks from a config (the reference's ``plugins`` of a
ResNet): ``{type = "ContextBlock", ratio = 0.0625}``, ``{type = "GeneralizedAttention", ...}``,
``{type = "NonLocal2d", ...}``. They are registry components of the kind ``layer`` (like the conv and
norm layers of ``*_cfg`` tables), built once per residual block with that block's ``in_channels``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from detcore.models.layers._lookup import check_cfg, layer_factory


def infer_plugin_abbr(cls: Any) -> str:
    """The attribute name of a plugin block: its class's ``_abbr_`` (``context_block``,
    ``gen_attention_block``, ``nonlocal_block``), else its class name in snake case."""
    if not inspect.isclass(cls):
        raise TypeError(f"plugin layer factory must be a class to name it, got {cls!r}")
    if hasattr(cls, "_abbr_"):
        return cls._abbr_
    snake = re.sub("([a-z0-9])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", cls.__name__))
    return snake.lower()


def build_plugin_layer(
    cfg: Mapping[str, Any], postfix: int | str = "", **kwargs: Any
) -> tuple[str, nn.Module]:
    """Build a plugin block from its table; ``kwargs`` (``in_channels``) come from the host block.

    A ``postfix`` key in the table (the reference's way to insert two blocks of one type) wins over the
    argument. Returns ``(name, block)``, name = abbreviation + postfix (``"context_block"``).
    """
    cfg = check_cfg(cfg, "plugin cfg")
    layer_type = cfg.pop("type")
    postfix = cfg.pop("postfix", postfix)
    factory = layer_factory(layer_type, "plugin cfg")
    clash = sorted(set(cfg) & set(kwargs))
    if clash:
        raise ValueError(
            f"plugin cfg of type '{layer_type}': {clash} are set by the host block, not the table"
        )
    return infer_plugin_abbr(factory) + str(postfix), factory(**kwargs, **cfg)


__all__ = ["build_plugin_layer", "infer_plugin_abbr"]
