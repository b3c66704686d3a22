"""M2Det's thinned U-shape module (TUM; Zhao et al., AAAI 2019, Fig. 4 (c)).

Encoder: ``num_scales - 1`` 3x3 convs of ``planes`` channels, each halving the size (stride 2,
padding 1) except where ``down_strides`` says 1 (padding 0, the size shrinks by 2: the last step
3 -> 1 at 320 x 320 input and 4 -> 2 at 512 x 512, as the paper's 6-scale pyramids have).

Decoder, from the deepest map up: a 1x1 conv on the deepest encoder map, then at each larger scale
the coarser decoder map is upsampled (nearest, to that scale's size) and summed with a 3x3 lateral
conv of the encoder map at that scale (the TUM's input for the largest scale). After every sum (and
on the deepest map) a 1x1 conv gives the TUM's output at that scale ("1x1 convolution layers after
the upsample and element-wise sum operation ... to enhance learning ability and keep smoothness").

State-dict keys: ``down_convs.{i}``, ``top_conv``, ``lateral_convs.{i}`` (``i = 0`` is the deepest
lateral, the last one reads the TUM's input) and ``smooth_convs.{s}`` (``s = 0`` is the largest scale),
each a ``ConvModule``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from det_plugin_m2det.ffm import layer_cfgs
from detcore.models import ConvModule


def default_down_strides(num_scales: int) -> tuple[int, ...]:
    """Stride 2 for every encoder conv but the last (stride 1, padding 0); one stride-2 conv for 2 scales."""
    if num_scales < 2:
        raise ValueError(f"TUM: num_scales must be >= 2, got {num_scales}")
    if num_scales == 2:
        return (2,)
    return (2,) * (num_scales - 2) + (1,)


class TUM(nn.Module):
    """One level of the multi-level pyramid: a map ``(B, in_channels, H, W)`` -> ``num_scales`` maps
    ``(B, out_channels, h_s, w_s)``, largest first (``h_0 = H``).

    Args:
        in_channels: channels of the input (FFMv2's output; the first level: the reduced base feature).
        planes: channels of the encoder and decoder maps (paper: 256).
        out_channels: channels of every output scale (paper Fig. 4: 128).
        num_scales: outputs per TUM (paper: 6), i.e. ``num_scales - 1`` encoder convs.
        down_strides: stride (2 or 1) of each encoder conv; default :func:`default_down_strides`.
        conv_cfg, norm_cfg, act_cfg: layer tables of every conv.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int = 256,
        out_channels: int = 128,
        num_scales: int = 6,
        down_strides: Sequence[int] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006 - read only
    ) -> None:
        super().__init__()
        strides = tuple(down_strides) if down_strides is not None else default_down_strides(num_scales)
        if len(strides) != num_scales - 1 or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"TUM: down_strides must be {num_scales - 1} values of 1 or 2 for num_scales={num_scales}, "
                f"got {strides}"
            )
        cfgs = layer_cfgs(conv_cfg, norm_cfg, act_cfg)
        self.in_channels, self.planes, self.out_channels = in_channels, planes, out_channels
        self.num_scales, self.down_strides = num_scales, strides

        self.down_convs = nn.ModuleList(
            ConvModule(
                in_channels if i == 0 else planes, planes, 3, stride=s, padding=1 if s == 2 else 0, **cfgs
            )
            for i, s in enumerate(strides)
        )
        self.top_conv = ConvModule(planes, planes, 1, **cfgs)
        # lateral i reads encoder map num_scales - 2 - i (0: the TUM's input)
        self.lateral_convs = nn.ModuleList(
            ConvModule(in_channels if i == num_scales - 2 else planes, planes, 3, padding=1, **cfgs)
            for i in range(num_scales - 1)
        )
        self.smooth_convs = nn.ModuleList(
            ConvModule(planes, out_channels, 1, **cfgs) for _ in range(num_scales)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"TUM: expected (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        encoder = [x]
        for conv in self.down_convs:
            if min(encoder[-1].shape[-2:]) < (3 if conv.conv.stride[0] == 1 else 2):
                raise ValueError(
                    f"TUM: input {tuple(x.shape[-2:])} is too small for {self.num_scales} scales with "
                    f"down_strides {self.down_strides}"
                )
            encoder.append(conv(encoder[-1]))
        decoder = [self.top_conv(encoder[-1])]  # deepest first
        for i, lateral in enumerate(self.lateral_convs):
            skip = encoder[self.num_scales - 2 - i]
            up = F.interpolate(decoder[-1], size=skip.shape[-2:], mode="nearest")
            decoder.append(up + lateral(skip))
        decoder.reverse()  # largest first
        return [smooth(d) for smooth, d in zip(self.smooth_convs, decoder)]
