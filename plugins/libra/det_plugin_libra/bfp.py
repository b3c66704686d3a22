"""``BFP``: the balanced feature pyramid of Libra R-CNN (Pang et al., 2019), a neck after an FPN.

1. Gather: every level is resized to the size of level ``refine_level`` (adaptive max pooling for the
   finer levels, nearest interpolation for the coarser ones) and the resized maps are averaged.
2. Refine: the average goes through a non-local block (``refine_type = "non_local"``, state-dict
   keys ``refine.{g,conv_out,theta,phi}.conv``), a 3x3 conv (``"conv"``) or nothing (``None``).
3. Scatter: the refined map is resized back to each level (nearest interpolation up, adaptive max
   pooling down) and added to that level's input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from detcore.models import BaseModule, ConvModule
from detcore.models.layers import NonLocal2d

REFINE_TYPES = (None, "conv", "non_local")


def _resize(x: torch.Tensor, size: tuple[int, int], pool: bool) -> torch.Tensor:
    return F.adaptive_max_pool2d(x, output_size=size) if pool else F.interpolate(x, size=size, mode="nearest")


class BFP(BaseModule):
    """Balanced feature pyramid: ``num_levels`` maps ``(B, in_channels, h_i, w_i)`` -> as many of the
    same shapes.

    Args:
        in_channels: channels of every level (the FPN's ``out_channels``).
        num_levels: number of input levels.
        refine_level: the level whose size the levels are gathered at (0 = the finest).
        refine_type: ``"non_local"`` (embedded Gaussian, no scaling, full width), ``"conv"`` or None.
        conv_cfg / norm_cfg: for the refine block's convs.
        init_cfg: Xavier-uniform convs; the non-local block then re-initialises its own (identity).
    """

    def __init__(
        self,
        in_channels: int,
        num_levels: int,
        refine_level: int = 2,
        refine_type: str | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Xavier", "layer": "Conv2d", "distribution": "uniform",
        },
    ) -> None:
        super().__init__(init_cfg)
        if refine_type not in REFINE_TYPES:
            raise ValueError(f"BFP: refine_type must be one of {REFINE_TYPES}, got {refine_type!r}")
        if not 0 <= refine_level < num_levels:
            raise ValueError(f"BFP: refine_level must be in [0, {num_levels}), got {refine_level}")
        self.in_channels = in_channels
        self.num_levels = num_levels
        self.refine_level = refine_level
        self.refine_type = refine_type
        conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        if refine_type == "conv":
            self.refine = ConvModule(in_channels, in_channels, 3, padding=1, conv_cfg=conv_cfg,
                                     norm_cfg=norm_cfg)
        elif refine_type == "non_local":
            self.refine = NonLocal2d(in_channels, reduction=1, use_scale=False, conv_cfg=conv_cfg,
                                     norm_cfg=norm_cfg)

    def gather(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The average of the levels resized to level ``refine_level``: ``(B, C, h_r, w_r)``."""
        size = tuple(inputs[self.refine_level].shape[2:])
        feats = [_resize(x, size, pool=i < self.refine_level) for i, x in enumerate(inputs)]
        return sum(feats) / len(feats)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != self.num_levels:
            raise ValueError(f"BFP: expected {self.num_levels} levels, got {len(inputs)}")
        bsf = self.gather(inputs)
        if self.refine_type is not None:
            bsf = self.refine(bsf)
        return tuple(
            x + _resize(bsf, tuple(x.shape[2:]), pool=i >= self.refine_level) for i, x in enumerate(inputs)
        )
