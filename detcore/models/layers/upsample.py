"""Upsampling layers named by ``upsample_cfg`` tables."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.layers._lookup import check_cfg, layer_factory


class PixelShufflePack(nn.Module):
    """A convolution to ``out_channels * scale_factor**2`` channels followed by a pixel shuffle."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int, upsample_kernel: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale_factor, self.upsample_kernel = scale_factor, upsample_kernel
        self.upsample_conv = nn.Conv2d(
            in_channels,
            out_channels * scale_factor * scale_factor,
            upsample_kernel,
            padding=(upsample_kernel - 1) // 2,
        )
        nn.init.xavier_uniform_(self.upsample_conv.weight)
        nn.init.zeros_(self.upsample_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)


def nearest_upsample(**kwargs: Any) -> nn.Upsample:
    """``nn.Upsample(mode="nearest")`` (scale_factor or size)."""
    return nn.Upsample(mode="nearest", **kwargs)


def bilinear_upsample(**kwargs: Any) -> nn.Upsample:
    """``nn.Upsample(mode="bilinear")`` (scale_factor or size, align_corners)."""
    return nn.Upsample(mode="bilinear", **kwargs)


def build_upsample_layer(cfg: dict, *args: Any, **kwargs: Any) -> nn.Module:
    """Build an upsampling layer from an ``upsample_cfg`` table: ``nearest``, ``bilinear``
    (``nn.Upsample``), ``deconv`` (``nn.ConvTranspose2d``), ``pixel_shuffle`` (:class:`PixelShufflePack`)."""
    cfg = check_cfg(cfg, "upsample_cfg")
    return layer_factory(cfg.pop("type"), "upsample_cfg")(*args, **kwargs, **cfg)
