"""M2Det's feature fusion modules (Zhao et al., AAAI 2019, Fig. 4 (a) and (b)).

- :class:`FFMv1` builds the *base feature* from two backbone levels: the shallow map (stride ``s``)
  through a 3x3 conv, the deep map (stride ``2s``) through a 1x1 conv and nearest upsampling to the
  shallow map's size, both concatenated along channels (VGG-16: 256 + 512 = 768 channels).
- :class:`FFMv2` prepares one TUM's input: a 1x1 conv reduces the base feature (768 -> 128), which is
  concatenated with the previous TUM's largest output (128 channels), giving 256 channels.

Every conv is a ``ConvModule`` (conv, optional norm, ReLU); state-dict keys ``*.conv.weight``,
``*.bn.*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detcore.models import ConvModule


def layer_cfgs(
    conv_cfg: Mapping[str, Any] | None, norm_cfg: Mapping[str, Any] | None, act_cfg: Mapping[str, Any] | None
) -> dict[str, dict | None]:
    """The ``conv_cfg`` / ``norm_cfg`` / ``act_cfg`` keyword arguments of a ``ConvModule`` (plain dicts)."""
    return {
        "conv_cfg": dict(conv_cfg) if conv_cfg else None,
        "norm_cfg": dict(norm_cfg) if norm_cfg else None,
        "act_cfg": dict(act_cfg) if act_cfg else None,
    }


class FFMv1(nn.Module):
    """Fuses a shallow and a deep backbone map into the base feature.

    Args:
        in_channels: ``(shallow, deep)`` channels (VGG-16: conv4_3 512, fc7 1024).
        out_channels: ``(shallow, deep)`` channels after the 3x3 / 1x1 reductions (paper: 256, 512).
        conv_cfg, norm_cfg, act_cfg: layer tables of the two convs.

    Forward: ``shallow (B, in[0], H, W)``, ``deep (B, in[1], h, w)`` -> ``(B, out[0] + out[1], H, W)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int] = (256, 512),
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006 - read only
    ) -> None:
        super().__init__()
        if len(in_channels) != 2 or len(out_channels) != 2:
            raise ValueError(
                f"FFMv1: in_channels and out_channels must be (shallow, deep) pairs, got "
                f"{tuple(in_channels)} "
                f"and {tuple(out_channels)}"
            )
        cfgs = layer_cfgs(conv_cfg, norm_cfg, act_cfg)
        self.in_channels, self.out_channels = tuple(in_channels), tuple(out_channels)
        self.shallow_conv = ConvModule(in_channels[0], out_channels[0], 3, padding=1, **cfgs)
        self.deep_conv = ConvModule(in_channels[1], out_channels[1], 1, **cfgs)

    @property
    def base_channels(self) -> int:
        """Channels of the base feature."""
        return sum(self.out_channels)

    def forward(self, shallow: Tensor, deep: Tensor) -> Tensor:
        deep = F.interpolate(self.deep_conv(deep), size=shallow.shape[-2:], mode="nearest")
        return torch.cat([self.shallow_conv(shallow), deep], dim=1)


class FFMv2(nn.Module):
    """Reduces the base feature with a 1x1 conv and appends the previous TUM's largest output.

    Args:
        base_channels: channels of the base feature (768).
        out_channels: channels of the reduced base feature (paper: 128).
        conv_cfg, norm_cfg, act_cfg: layer tables of the 1x1 conv.

    Forward: ``base (B, base_channels, H, W)``, ``previous (B, C, H, W)`` or None (the first level has no
    previous TUM) -> ``(B, out_channels [+ C], H, W)``.
    """

    def __init__(
        self,
        base_channels: int,
        out_channels: int = 128,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006 - read only
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = ConvModule(base_channels, out_channels, 1, **layer_cfgs(conv_cfg, norm_cfg, act_cfg))

    def forward(self, base: Tensor, previous: Tensor | None = None) -> Tensor:
        reduced = self.conv(base)
        if previous is None:
            return reduced
        if previous.shape[-2:] != reduced.shape[-2:]:
            raise ValueError(
                f"FFMv2: the previous TUM's largest output is {tuple(previous.shape[-2:])}, the base feature "
                f"{tuple(reduced.shape[-2:])}; they must have the same size"
            )
        return torch.cat([reduced, previous], dim=1)
