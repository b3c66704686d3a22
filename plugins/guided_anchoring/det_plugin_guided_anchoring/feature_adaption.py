"""``FeatureAdaption``: Guided Anchoring's feature adaption module.

The anchor shape predicted at each location (``shape_pred`` ``(B, 2, H, W)``: ``dw``, ``dh``) is turned
by a 1x1 conv without bias (``conv_offset``) into the sampling offsets of a 3x3 deformable conv
(``conv_adaption``, ``deform_groups`` groups: ``2 * 9 * deform_groups`` offset channels, in the
``(dy, dx)`` per-tap layout of :func:`detcore.ops.deform_conv2d`), so the features of a location follow
the extent of the anchor predicted there. The shape prediction is detached: the adaption does not train
the shape branch. Output: ``relu(deform_conv(x, conv_offset(shape)))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.init import BaseModule
from detcore.ops.modules import DeformConv2d


class FeatureAdaption(BaseModule):
    """Feature adaption with offsets from the predicted anchor shapes.

    Args:
        in_channels / out_channels: channels of ``x`` and of the result.
        kernel_size: of the deformable conv (padding ``(k - 1) // 2``, same size out).
        deform_groups: deformable groups (the input channels must divide by it).
        init_cfg: Normal(0.1) for ``conv_offset``, Normal(0.01) for ``conv_adaption`` (the reference's).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        deform_groups: int = 4,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.1,
            "override": {"type": "Normal", "name": "conv_adaption", "std": 0.01},
        },
    ) -> None:
        super().__init__(init_cfg)
        if int(kernel_size) % 2 != 1:
            raise ValueError(f"FeatureAdaption: kernel_size must be odd, got {kernel_size}")
        offset_channels = kernel_size * kernel_size * 2
        self.conv_offset = nn.Conv2d(2, deform_groups * offset_channels, 1, bias=False)
        self.conv_adaption = DeformConv2d(
            in_channels, out_channels, kernel_size=kernel_size, padding=(kernel_size - 1) // 2,
            deform_groups=deform_groups,
        )
        self.relu = nn.ReLU(inplace=True)

    def offsets(self, shape: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W)`` shape predictions -> ``(B, 2 * k * k * deform_groups, H, W)`` offsets."""
        if shape.dim() != 4 or shape.size(1) != 2:
            raise ValueError(
                f"FeatureAdaption: shape must be (B, 2, H, W) (dw, dh), got {tuple(shape.shape)}"
            )
        return self.conv_offset(shape.detach())

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C_in, H, W)``, ``shape`` ``(B, 2, H, W)`` -> ``(B, C_out, H, W)``."""
        if x.shape[-2:] != shape.shape[-2:]:
            raise ValueError(
                f"FeatureAdaption: features {tuple(x.shape)} and shape {tuple(shape.shape)} differ in size"
            )
        return self.relu(self.conv_adaption(x, self.offsets(shape)))
