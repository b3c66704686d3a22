"""Feature Pyramid Network (Lin et al., 2017): a top-down pathway with lateral connections.

Modules and state-dict keys are those of the reference checkpoints: ``lateral_convs.{i}.conv`` (1x1),
then ``fpn_convs.{i}.conv`` (3x3 output convs, followed by the stride-2 extra convs when
``add_extra_convs`` is on).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from detcore.models import BaseModule, ConvModule

EXTRA_CONV_SOURCES = ("on_input", "on_lateral", "on_output")


def _default_init_cfg() -> dict[str, Any]:
    """Xavier-uniform convolutions with zero bias."""
    return {"type": "Xavier", "layer": "Conv2d", "distribution": "uniform"}


def upsample_add(top: Tensor, lateral: Tensor, upsample_cfg: Mapping[str, Any]) -> Tensor:
    """``lateral + interpolate(top)``, to ``lateral``'s size (or by the table's ``scale_factor``)."""
    cfg = dict(upsample_cfg)
    if "scale_factor" in cfg:
        return lateral + F.interpolate(top, **cfg)
    return lateral + F.interpolate(top, size=lateral.shape[2:], **cfg)


class FPN(BaseModule):
    """FPN neck: ``len(in_channels)`` backbone maps -> ``num_outs`` maps of ``out_channels`` channels.

    Levels ``start_level .. end_level`` of the input get a lateral 1x1 conv, the top-down sum and a 3x3
    output conv. The remaining ``num_outs - used levels`` outputs each halve the resolution: a
    ``max_pool2d(kernel 1, stride 2)`` of the last output when ``add_extra_convs`` is false, otherwise
    stride-2 3x3 convs whose first input is the last used backbone map (``"on_input"``, also what
    ``True`` means), its lateral (``"on_lateral"``) or the last FPN output (``"on_output"``); later extra
    convs take the previous extra output (through a ReLU with ``relu_before_extra_convs``).

    Args:
        in_channels: channels of every input map (all of them, also those below ``start_level``).
        out_channels: channels of every output map.
        num_outs: number of outputs.
        start_level, end_level: first and last input level used (``end_level=-1``: the last one); when
            ``end_level`` is not the last level, no extra levels are allowed.
        add_extra_convs: False, True, ``"on_input"``, ``"on_lateral"`` or ``"on_output"``.
        relu_before_extra_convs: ReLU before every extra conv but the first.
        no_norm_on_lateral: lateral convs without the norm of ``norm_cfg``.
        conv_cfg, norm_cfg, act_cfg: layer tables for every conv (default: plain conv with bias, no
            norm, no activation).
        upsample_cfg: keyword arguments of ``F.interpolate`` for the top-down path (``mode``,
            ``scale_factor``, ``align_corners``).
        init_cfg: weight initialisation (default: Xavier uniform on convs, zero bias).

    Forward: tuple of ``len(in_channels)`` maps (B, in_channels[i], H_i, W_i) -> tuple of ``num_outs``
    maps (B, out_channels, H'_k, W'_k), the first at the resolution of input ``start_level``.
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
        super().__init__(_default_init_cfg() if init_cfg is None else init_cfg)
        name = type(self).__name__
        if isinstance(in_channels, (str, bytes)) or not isinstance(in_channels, Sequence) or not in_channels:
            raise TypeError(f"{name}: in_channels must be a non-empty list of ints, got {in_channels!r}")
        in_channels = [int(c) for c in in_channels]
        num_ins = len(in_channels)
        if not 0 <= start_level < num_ins:
            raise ValueError(f"{name}: start_level {start_level} out of range for {num_ins} inputs")
        if end_level == -1 or end_level == num_ins - 1:
            backbone_end_level = num_ins
            if num_outs < num_ins - start_level:
                raise ValueError(
                    f"{name}: num_outs ({num_outs}) must be at least the number of used inputs "
                    f"({num_ins - start_level}: levels {start_level}..{num_ins - 1})"
                )
        else:
            if not start_level <= end_level < num_ins:
                raise ValueError(
                    f"{name}: end_level {end_level} must be -1 or in [{start_level}, {num_ins - 1}]"
                )
            backbone_end_level = end_level + 1
            if num_outs != end_level - start_level + 1:
                raise ValueError(
                    f"{name}: with end_level {end_level} (not the last input) num_outs must be "
                    f"{end_level - start_level + 1} (no extra levels), got {num_outs}"
                )
        if isinstance(add_extra_convs, str):
            if add_extra_convs not in EXTRA_CONV_SOURCES:
                raise ValueError(
                    f"{name}: add_extra_convs must be a bool or one of {EXTRA_CONV_SOURCES}, "
                    f"got {add_extra_convs!r}"
                )
        elif isinstance(add_extra_convs, bool):
            add_extra_convs = "on_input" if add_extra_convs else False
        else:
            raise TypeError(f"{name}: add_extra_convs must be a bool or a string, got {add_extra_convs!r}")
        upsample_cfg = dict(upsample_cfg)
        if "size" in upsample_cfg:
            raise ValueError(f"{name}: upsample_cfg must not set 'size' (it is each lateral's size)")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_ins = num_ins
        self.num_outs = num_outs
        self.start_level = start_level
        self.end_level = end_level
        self.backbone_end_level = backbone_end_level
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.no_norm_on_lateral = no_norm_on_lateral
        self.upsample_cfg = upsample_cfg

        def conv(
            cin: int, k: int, stride: int = 1, norm: Optional[Mapping[str, Any]] = norm_cfg
        ) -> ConvModule:
            return ConvModule(
                cin,
                out_channels,
                k,
                stride=stride,
                padding=k // 2,
                conv_cfg=_opt_dict(conv_cfg),
                norm_cfg=_opt_dict(norm),
                act_cfg=_opt_dict(act_cfg),
                inplace=False,
            )

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, backbone_end_level):
            self.lateral_convs.append(conv(in_channels[i], 1, norm=None if no_norm_on_lateral else norm_cfg))
            self.fpn_convs.append(conv(out_channels, 3))
        extra_levels = num_outs - backbone_end_level + start_level
        if add_extra_convs and extra_levels >= 1:
            for i in range(extra_levels):
                first_on_input = i == 0 and add_extra_convs == "on_input"
                cin = in_channels[backbone_end_level - 1] if first_on_input else out_channels
                self.fpn_convs.append(conv(cin, 3, stride=2))

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        if len(inputs) != self.num_ins:
            raise ValueError(f"{type(self).__name__}: expected {self.num_ins} input maps, got {len(inputs)}")
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(
                    f"{type(self).__name__}: input {i} must be (B, {c}, H, W), got {tuple(x.shape)}"
                )

    def top_down(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """Laterals of the used levels after the top-down sums (coarsest level unchanged)."""
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = upsample_add(laterals[i], laterals[i - 1], self.upsample_cfg)
        return laterals

    def add_extra_levels(
        self, outs: list[Tensor], inputs: Sequence[Tensor], laterals: list[Tensor]
    ) -> list[Tensor]:
        """Append the outputs beyond the used backbone levels to ``outs`` (see the class docstring)."""
        used = len(laterals)
        if self.num_outs <= len(outs):
            return outs
        if not self.add_extra_convs:
            for _ in range(self.num_outs - used):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            return outs
        if self.add_extra_convs == "on_input":
            source = inputs[self.backbone_end_level - 1]
        elif self.add_extra_convs == "on_lateral":
            source = laterals[-1]
        else:  # on_output
            source = outs[-1]
        outs.append(self.fpn_convs[used](source))
        for i in range(used + 1, self.num_outs):
            prev = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
            outs.append(self.fpn_convs[i](prev))
        return outs

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        self._check_inputs(inputs)
        laterals = self.top_down(inputs)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals))]
        return tuple(self.add_extra_levels(outs, inputs, laterals))


def _opt_dict(cfg: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """ConvModule wants plain dicts (TOML tables may arrive as other mappings)."""
    return None if cfg is None else dict(cfg)
