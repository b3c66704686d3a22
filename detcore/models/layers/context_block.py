"""``ContextBlock``: the global context block of GCNet (Cao et al., "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", 2019).

One context vector per image is pooled from all positions (attention pooling: a 1x1 conv gives one
logit per position, a softmax over the ``H * W`` positions weights the sum of the features; or a plain
average), transformed by a bottleneck ``1x1 conv (C -> C * ratio) -> LayerNorm -> ReLU -> 1x1 conv``,
and fused into every position: added (``channel_add``) and/or multiplied after a sigmoid
(``channel_mul``). The last conv of each transform starts at zero, so with ``channel_add`` a fresh block
is the identity; with ``channel_mul`` it starts as ``x * sigmoid(0) = x / 2``, as in the reference.

State-dict names are the reference's: ``conv_mask``, ``channel_add_conv.{0,1,3}``,
``channel_mul_conv.{0,1,3}``; as a ResNet plugin the block is named ``context_block``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from detcore.models.init import constant_init, kaiming_init

POOLING_TYPES = ("att", "avg")
FUSION_TYPES = ("channel_add", "channel_mul")


class ContextBlock(nn.Module):
    """Global context block on ``(B, in_channels, H, W)`` -> same shape.

    Args:
        in_channels: channels of the input and the output.
        ratio: the transform's bottleneck has ``int(in_channels * ratio)`` channels (1/16: "r16").
        pooling_type: ``"att"`` (softmax-weighted sum over positions) or ``"avg"`` (mean).
        fusion_types: one or both of ``"channel_add"`` and ``"channel_mul"``.
    """

    _abbr_ = "context_block"

    def __init__(
        self,
        in_channels: int,
        ratio: float,
        pooling_type: str = "att",
        fusion_types: Sequence[str] = ("channel_add",),
    ) -> None:
        super().__init__()
        if pooling_type not in POOLING_TYPES:
            raise ValueError(
                f"ContextBlock: pooling_type must be one of {POOLING_TYPES}, got {pooling_type!r}"
            )
        if isinstance(fusion_types, str) or not isinstance(fusion_types, Sequence):
            raise TypeError(
                f"ContextBlock: fusion_types must be a list of {FUSION_TYPES}, got {fusion_types!r}"
            )
        fusion_types = tuple(fusion_types)
        bad = [f for f in fusion_types if f not in FUSION_TYPES]
        if not fusion_types or bad:
            raise ValueError(
                f"ContextBlock: fusion_types must be a non-empty list of {FUSION_TYPES}, got {fusion_types!r}"
            )
        planes = int(in_channels * ratio)
        if in_channels < 1 or planes < 1:
            raise ValueError(
                f"ContextBlock: in_channels * ratio must be >= 1, got {in_channels} * {ratio}"
            )
        self.in_channels, self.ratio, self.planes = in_channels, ratio, planes
        self.pooling_type, self.fusion_types = pooling_type, fusion_types
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
        self.channel_add_conv = self._transform() if "channel_add" in fusion_types else None
        self.channel_mul_conv = self._transform() if "channel_mul" in fusion_types else None
        self.init_weights()

    def _transform(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(self.in_channels, self.planes, kernel_size=1),
            nn.LayerNorm([self.planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.planes, self.in_channels, kernel_size=1),
        )

    def init_weights(self) -> None:
        """Kaiming (fan_in) mask conv; the last conv of each transform zero (weight and bias)."""
        if self.pooling_type == "att":
            kaiming_init(self.conv_mask, mode="fan_in")
        for transform in (self.channel_add_conv, self.channel_mul_conv):
            if transform is not None:
                constant_init(transform[-1], 0)

    def spatial_pool(self, x: Tensor) -> Tensor:
        """The context ``(B, C, 1, 1)`` of ``x`` ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        if self.pooling_type == "avg":
            return x.mean(dim=(2, 3), keepdim=True)
        weights = self.conv_mask(x).view(b, 1, h * w).softmax(dim=2)  # (B, 1, HW), sums to 1
        context = torch.bmm(x.view(b, c, h * w), weights.transpose(1, 2))  # (B, C, 1)
        return context.view(b, c, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ContextBlock: expected (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, pooling_type={self.pooling_type!r}, fusion_types={self.fusion_types}"
