"""HRFPN: the HRNetV2p feature pyramid (Sun et al., arXiv:1904.04514, "HRNetV2p").

Every input branch is upsampled (bilinear) to the size of the first, highest-resolution one and the
maps are concatenated; a 1x1 conv (``reduction_conv``) reduces the concatenation to ``out_channels``;
level ``k`` of the pyramid is that map pooled (average or max) with kernel and stride ``2**k``; each
level then goes through its own 3x3 conv (``fpn_convs.{k}``). State-dict keys are the reference's:
``reduction_conv.conv.*`` and ``fpn_convs.{k}.conv.*`` (ConvModules, plain convs with bias by default).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from detcore.models import BaseModule, ConvModule

POOLING_TYPES = {"AVG": F.avg_pool2d, "MAX": F.max_pool2d}


class HRFPN(BaseModule):
    """HRFPN neck: ``len(in_channels)`` maps at strides ``s * 2**i`` -> ``num_outs`` maps of
    ``out_channels`` channels at strides ``s * 2**k`` (``s`` the stride of the first input; with
    ``stride > 1`` every output is further strided by the 3x3 convs).

    Args:
        in_channels: channels of every input map (HRNetV2-W32: ``[32, 64, 128, 256]``).
        out_channels: channels of every output map.
        num_outs: number of pyramid levels (5: P2-P6 on HRNetV2).
        pooling_type: ``"AVG"`` or ``"MAX"`` pooling for the coarser levels.
        conv_cfg, norm_cfg: layer tables of the convs (default: plain convs with bias, no norm).
        with_cp: activation checkpointing of the 3x3 output convs.
        stride: stride of the 3x3 output convs.
        init_cfg: weight initialisation (default: Kaiming-normal convs, zero bias).

    Forward: tuple of maps (B, in_channels[i], H / 2**i, W / 2**i) -> tuple of ``num_outs`` maps
    (B, out_channels, floor(H / 2**k), floor(W / 2**k)) (for ``stride = 1``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int = 5,
        pooling_type: str = "AVG",
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Optional[Mapping[str, Any]] = None,
        with_cp: bool = False,
        stride: int = 1,
        init_cfg: Optional[Any] = {"type": "Kaiming", "layer": "Conv2d"},  # noqa: B006 - read only
    ) -> None:
        super().__init__(init_cfg)
        if isinstance(in_channels, (str, bytes)) or not isinstance(in_channels, Sequence) or not in_channels:
            raise TypeError(f"HRFPN: in_channels must be a non-empty list of ints, got {in_channels!r}")
        if pooling_type not in POOLING_TYPES:
            raise ValueError(
                f"HRFPN: pooling_type must be one of {sorted(POOLING_TYPES)}, got {pooling_type!r}"
            )
        if num_outs < 1:
            raise ValueError(f"HRFPN: num_outs must be >= 1, got {num_outs}")
        self.in_channels = [int(c) for c in in_channels]
        self.num_ins = len(self.in_channels)
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.pooling_type = pooling_type
        self.pooling = POOLING_TYPES[pooling_type]
        self.with_cp = with_cp
        conv = None if conv_cfg is None else dict(conv_cfg)
        norm = None if norm_cfg is None else dict(norm_cfg)
        self.reduction_conv = ConvModule(
            sum(self.in_channels), out_channels, 1, conv_cfg=conv, norm_cfg=norm, act_cfg=None
        )
        self.fpn_convs = nn.ModuleList(
            ConvModule(
                out_channels,
                out_channels,
                3,
                stride=stride,
                padding=1,
                conv_cfg=conv,
                norm_cfg=norm,
                act_cfg=None,
            )  # fmt: skip
            for _ in range(num_outs)
        )

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != self.num_ins:
            raise ValueError(f"HRFPN: expected {self.num_ins} input maps, got {len(inputs)}")
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f"HRFPN: input {i} must be (B, {c}, H, W), got {tuple(x.shape)}")
        size = inputs[0].shape[-2:]
        # bilinear upsampling by 2**i: the same sampling as the scale factor when size = 2**i x input
        maps = [inputs[0]] + [
            F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in inputs[1:]
        ]
        out = self.reduction_conv(torch.cat(maps, dim=1))
        levels = [out] + [self.pooling(out, kernel_size=2**k, stride=2**k) for k in range(1, self.num_outs)]
        outs = []
        for level, conv in zip(levels, self.fpn_convs):
            if self.with_cp and level.requires_grad:
                outs.append(cp.checkpoint(conv, level, use_reentrant=False))
            else:
                outs.append(conv(level))
        return tuple(outs)


__all__ = ["HRFPN", "POOLING_TYPES"]
