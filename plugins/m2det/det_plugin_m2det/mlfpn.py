"""``MLFPN``: M2Det's multi-level feature pyramid network (Zhao et al., AAAI 2019, Fig. 2), a neck.

1. :class:`FFMv1` fuses the two backbone maps into the base feature (stride of the shallow map).
2. ``num_levels`` TUMs: level 1 reads the base feature reduced by its 1x1 conv; level ``l > 1``
   reads :class:`FFMv2` (reduced base feature concatenated with level ``l - 1``'s largest output).
   Each TUM gives ``num_scales`` maps, largest first (Eq. 1).
3. :class:`SFAM` concatenates the levels scale by scale and reweights the channels (Eq. 2-3).

With the paper's VGG-16 settings (512 x 512 input): conv4_3 (512, 64x64) and fc7 (1024, 32x32) ->
base (768, 64x64) -> 8 TUMs of 256 planes and 128 outputs -> 6 maps of 1024 channels at 64, 32,
16, 8, 4, 2.

State-dict keys: ``ffm1.{shallow_conv,deep_conv}``, ``ffm2s.{l}.conv`` (one per level, level 0's
has no previous TUM to append), ``tums.{l}.*`` (see :mod:`det_plugin_m2det.tum`) and
``sfam.attentions.{s}.{fc1,fc2}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from det_plugin_m2det.ffm import FFMv1, FFMv2
from det_plugin_m2det.sfam import SFAM
from det_plugin_m2det.tum import TUM
from detcore.models import BaseModule


def _default_init_cfg() -> list[dict[str, Any]]:
    return [
        {"type": "Kaiming", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": "BatchNorm2d"},
    ]


class MLFPN(BaseModule):
    """Multi-level feature pyramid on two backbone maps.

    Args:
        in_channels: channels of the ``(shallow, deep)`` backbone maps (VGG-16: ``(512, 1024)``); the deep
            map may be any size, it is upsampled to the shallow one's.
        ffm1_channels: FFMv1's ``(shallow, deep)`` reductions (paper: ``(256, 512)``, base 768).
        ffm2_channels: FFMv2's reduction of the base feature (paper: 128).
        planes: TUM encoder/decoder channels (paper: 256).
        tum_out_channels: channels of each TUM output (paper Fig. 4: 128).
        num_levels: TUMs (paper: 8).
        num_scales: pyramid scales (paper: 6).
        down_strides: strides of each TUM's encoder convs (default: 2, ..., 2, 1; see :class:`TUM`).
        sfam: SFAM's channel attention (False: concatenation only).
        sfam_reduction: SE reduction ratio (paper: 16).
        conv_cfg, norm_cfg, act_cfg: layer tables of every FFM/TUM conv (default: conv, BN, ReLU).
        init_cfg: weight init (default: Kaiming on convs, BN weight 1).

    Forward: the backbone's ``(shallow (B, in[0], H, W), deep (B, in[1], h, w))`` -> tuple of
    ``num_scales`` maps ``(B, num_levels * tum_out_channels, h_s, w_s)``, ``h_0 = H``.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024),
        ffm1_channels: Sequence[int] = (256, 512),
        ffm2_channels: int = 128,
        planes: int = 256,
        tum_out_channels: int = 128,
        num_levels: int = 8,
        num_scales: int = 6,
        down_strides: Sequence[int] | None = None,
        sfam: bool = True,
        sfam_reduction: int = 16,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = {"type": "BN"},  # noqa: B006 - read only
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg if init_cfg is not None else _default_init_cfg())
        if num_levels < 1:
            raise ValueError(f"MLFPN: num_levels must be >= 1, got {num_levels}")
        layers = {"conv_cfg": conv_cfg, "norm_cfg": norm_cfg, "act_cfg": act_cfg}
        self.in_channels = tuple(in_channels)
        self.num_levels, self.num_scales = num_levels, num_scales
        self.ffm1 = FFMv1(in_channels, ffm1_channels, **layers)
        base = self.ffm1.base_channels
        self.ffm2s = nn.ModuleList(FFMv2(base, ffm2_channels, **layers) for _ in range(num_levels))
        self.tums = nn.ModuleList(
            TUM(ffm2_channels + (tum_out_channels if level > 0 else 0), planes, tum_out_channels, num_scales,
                down_strides, **layers)
            for level in range(num_levels)
        )  # fmt: skip
        self.sfam = SFAM(num_levels, tum_out_channels, num_scales, sfam_reduction, attention=sfam)
        #: channels of every output scale
        self.out_channels = (self.sfam.out_channels,) * num_scales

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != 2:
            raise ValueError(f"MLFPN: expected the (shallow, deep) backbone maps, got {len(inputs)} maps")
        for name, x, c in zip(("shallow", "deep"), inputs, self.in_channels):
            if x.dim() != 4 or x.size(1) != c:
                raise ValueError(f"MLFPN: the {name} map must be (B, {c}, H, W), got shape {tuple(x.shape)}")
        base = self.ffm1(inputs[0], inputs[1])
        levels: list[list[Tensor]] = []
        for ffm2, tum in zip(self.ffm2s, self.tums):
            levels.append(tum(ffm2(base, levels[-1][0] if levels else None)))
        return self.sfam(levels)
