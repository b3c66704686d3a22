"""Path Aggregation FPN (Liu et al., 2018): FPN plus a bottom-up path that carries fine detail up.

Keys: those of :class:`~det_plugin_fpn.fpn.FPN`, then ``downsample_convs.{i}.conv`` (stride-2 3x3) and
``pafpn_convs.{i}.conv`` (3x3), one of each per used level above the first.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from torch import Tensor, nn

from det_plugin_fpn.fpn import FPN
from detcore.models import ConvModule


class PAFPN(FPN):
    """FPN whose outputs are refined bottom-up. With ``P_i`` the FPN outputs of the used levels:
    ``M_0 = P_0``, ``M_{i+1} = P_{i+1} + conv3x3_stride2(M_i)``; the outputs are ``M_0`` and
    ``conv3x3(M_i)`` for ``i >= 1``. Extra levels as in :class:`FPN` (``"on_output"`` starts from the
    last bottom-up output). Same arguments as :class:`FPN`.

    Forward: tuple of ``len(in_channels)`` maps -> tuple of ``num_outs`` maps of ``out_channels``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        start_level: int = 0,
        end_level: int = -1,
        add_extra_convs: Union[bool, str] = False,
        relu_before_extra_convs: bool = False,
        no_norm_on_lateral: bool = False,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Optional[Mapping[str, Any]] = None,
        act_cfg: Optional[Mapping[str, Any]] = None,
        upsample_cfg: Mapping[str, Any] = {"mode": "nearest"},  # noqa: B006 - read only
        init_cfg: Optional[Any] = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            num_outs,
            start_level=start_level,
            end_level=end_level,
            add_extra_convs=add_extra_convs,
            relu_before_extra_convs=relu_before_extra_convs,
            no_norm_on_lateral=no_norm_on_lateral,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            upsample_cfg=upsample_cfg,
            init_cfg=init_cfg,
        )

        def conv(stride: int) -> ConvModule:
            return ConvModule(
                out_channels,
                out_channels,
                3,
                stride=stride,
                padding=1,
                conv_cfg=None if conv_cfg is None else dict(conv_cfg),
                norm_cfg=None if norm_cfg is None else dict(norm_cfg),
                act_cfg=None if act_cfg is None else dict(act_cfg),
                inplace=False,
            )

        self.downsample_convs = nn.ModuleList()
        self.pafpn_convs = nn.ModuleList()
        for _ in range(self.start_level + 1, self.backbone_end_level):
            self.downsample_convs.append(conv(2))
            self.pafpn_convs.append(conv(1))

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        self._check_inputs(inputs)
        laterals = self.top_down(inputs)
        used = len(laterals)
        inter = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        for i in range(used - 1):
            inter[i + 1] = inter[i + 1] + self.downsample_convs[i](inter[i])
        outs = [inter[0]] + [self.pafpn_convs[i - 1](inter[i]) for i in range(1, used)]
        return tuple(self.add_extra_levels(outs, inputs, laterals))
