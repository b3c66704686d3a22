"""Convolution layers named by ``conv_cfg`` tables, and the weight-standardised convolution."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.layers._lookup import check_cfg, layer_factory


def conv_ws_2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """2-D convolution with each output filter standardised to zero mean and unit std first."""
    out_c = weight.size(0)
    flat = weight.reshape(out_c, -1)
    mean = flat.mean(dim=1).view(out_c, 1, 1, 1)
    std = flat.std(dim=1).view(out_c, 1, 1, 1)
    weight = (weight - mean) / (std + eps)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class ConvWS2d(nn.Conv2d):
    """``nn.Conv2d`` with weight standardisation (Qiao et al., 2019); same parameters and keys."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_ws_2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self.eps
        )


def deform_conv_pack(*args: Any, **kwargs: Any) -> nn.Module:
    """``detcore.ops.DeformConv2dPack`` (DCN v1 with its own offset conv)."""
    from detcore.ops import DeformConv2dPack

    return DeformConv2dPack(*args, **kwargs)


def modulated_deform_conv_pack(*args: Any, **kwargs: Any) -> nn.Module:
    """``detcore.ops.ModulatedDeformConv2dPack`` (DCN v2 with its own offset/mask conv)."""
    from detcore.ops import ModulatedDeformConv2dPack

    return ModulatedDeformConv2dPack(*args, **kwargs)


def build_conv_layer(cfg: dict | None, *args: Any, **kwargs: Any) -> nn.Module:
    """Build a convolution from a ``conv_cfg`` table.

    ``None`` gives ``nn.Conv2d``. ``cfg["type"]`` names a layer (``Conv``/``Conv2d``, ``Conv1d``,
    ``Conv3d``, ``DCN``, ``DCNv2``, ``ConvWS``, or any plugin's layer); the table's other keys (e.g.
    ``deform_groups``) and ``args``/``kwargs`` (in_channels, out_channels, kernel_size, ...) go to it.
    """
    if cfg is None:
        cfg = {"type": "Conv2d"}
    cfg = check_cfg(cfg, "conv_cfg")
    layer_type = cfg.pop("type")
    factory = layer_factory(layer_type, "conv_cfg")
    return factory(*args, **kwargs, **cfg)
