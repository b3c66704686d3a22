"""``DoubleConvFCBBoxHead``: Double-Head R-CNN's box head (Wu et al., "Rethinking Classification and
Localization for Object Detection", 2020).

::

    cls RoI features -> flatten -> fc_branch (num_fcs fcs + ReLU) -> fc_cls
    reg RoI features -> res_block -> conv_branch (num_convs Bottlenecks) -> avg pool -> fc_reg

The fc head classifies, the conv head regresses; each gets its own RoI features (the RoI head pools
the regression RoIs enlarged). State-dict names are the reference's: ``fc_cls``, ``fc_reg``,
``res_block.{conv1,conv2,conv_identity}``, ``conv_branch.N.{conv1..3,bn1..3}``, ``fc_branch.N``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from det_plugin_resnet.blocks import Bottleneck
from torch import nn

from detcore.models import BaseModule, ConvModule
from detcore.models.roi_heads.bbox_heads.bbox_head import BBoxHead


class BasicResBlock(BaseModule):
    """``relu(conv2(conv1(x)) + conv_identity(x))``: a 3x3 ConvModule (norm, ReLU) then a 1x1 one (norm,
    no activation) beside a 1x1 projection (norm).

    ``(N, in_channels, h, w)`` -> ``(N, out_channels, h, w)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = {"type": "BN"},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        self.conv1 = ConvModule(in_channels, in_channels, 3, padding=1, bias=False, conv_cfg=conv_cfg,
                                norm_cfg=norm_cfg)  # fmt: skip
        self.conv2 = ConvModule(in_channels, out_channels, 1, bias=False, conv_cfg=conv_cfg,
                                norm_cfg=norm_cfg, act_cfg=None)  # fmt: skip
        self.conv_identity = ConvModule(in_channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                        act_cfg=None)  # fmt: skip
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.conv_identity(x))


def _default_init_cfg() -> list[dict[str, Any]]:
    """The reference's: fc_cls N(0, 0.01), fc_reg N(0, 0.001), the fc branch Xavier-uniform, biases 0;
    the convs keep their ConvModule / Bottleneck initialisation."""
    return [
        {"type": "Normal", "override": {"type": "Normal", "name": "fc_cls", "std": 0.01}},
        {"type": "Normal", "override": {"type": "Normal", "name": "fc_reg", "std": 0.001}},
        {"type": "Xavier", "override": {"type": "Xavier", "name": "fc_branch", "distribution": "uniform"}},
    ]


class DoubleConvFCBBoxHead(BBoxHead):
    """Double-head box head: ``forward(x_cls, x_reg)``, both ``(N, in_channels, s, s)`` RoI features,
    -> ``cls_score`` ``(N, num_classes + 1)`` from the fc branch and ``bbox_pred`` ``(N, 4 * num_classes)``
    (``(N, 4)`` class-agnostic) from the conv branch.

    Args:
        num_convs: Bottleneck blocks of the conv branch (``conv_out_channels`` wide, a quarter inside).
        num_fcs: fcs of the fc branch (``fc_out_channels`` wide).
        conv_out_channels / fc_out_channels: widths of the two branches.
        conv_cfg / norm_cfg: for the conv branch (BatchNorm by default).
        **kwargs: :class:`BBoxHead` arguments (in_channels, roi_feat_size, num_classes, bbox_coder,
            reg_class_agnostic, losses); ``with_avg_pool`` must stay true (the conv branch is pooled).
    """

    def __init__(
        self,
        num_convs: int = 0,
        num_fcs: int = 0,
        conv_out_channels: int = 1024,
        fc_out_channels: int = 1024,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = {"type": "BN"},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("with_avg_pool", True)
        super().__init__(init_cfg=init_cfg if init_cfg is not None else _default_init_cfg(), **kwargs)
        name = type(self).__name__
        if not self.with_avg_pool:
            raise ValueError(f"{name}: with_avg_pool must be true (the conv branch is average-pooled)")
        if num_convs < 1 or num_fcs < 1:
            raise ValueError(f"{name}: needs num_convs >= 1 and num_fcs >= 1, got {num_convs} and {num_fcs}")
        if not (self.with_cls and self.with_reg):
            raise ValueError(f"{name}: both branches are needed (with_cls and with_reg)")
        self.num_convs, self.num_fcs = int(num_convs), int(num_fcs)
        self.conv_out_channels, self.fc_out_channels = int(conv_out_channels), int(fc_out_channels)
        self.conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        self.res_block = BasicResBlock(self.in_channels, self.conv_out_channels, self.conv_cfg, self.norm_cfg)
        self.conv_branch = nn.ModuleList(
            Bottleneck(self.conv_out_channels, self.conv_out_channels // 4, conv_cfg=self.conv_cfg,
                       norm_cfg=self.norm_cfg if self.norm_cfg is not None else {"type": "BN"})
            for _ in range(self.num_convs)
        )  # fmt: skip
        self.fc_branch = nn.ModuleList(
            nn.Linear(self.in_channels * self.roi_feat_area if i == 0 else self.fc_out_channels,
                      self.fc_out_channels)
            for i in range(self.num_fcs)
        )  # fmt: skip
        # BBoxHead built fc_cls / fc_reg on the pooled input; replace them (their keys keep their place)
        out_dim_reg = 4 if self.reg_class_agnostic else 4 * self.num_classes
        self.fc_reg = nn.Linear(self.conv_out_channels, out_dim_reg)
        self.fc_cls = nn.Linear(self.fc_out_channels, self.num_classes + 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(
        self, x_cls: torch.Tensor, x_reg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x_reg is None:
            raise ValueError(
                f"{type(self).__name__}: forward needs the classification and the regression RoI features "
                "(use it with DoubleHeadRoIHead)"
            )
        x_conv = self.res_block(x_reg)
        for block in self.conv_branch:
            x_conv = block(x_conv)
        bbox_pred = self.fc_reg(self.avg_pool(x_conv).flatten(1))
        x_fc = x_cls.flatten(1)
        for fc in self.fc_branch:
            x_fc = self.relu(fc(x_fc))
        return self.fc_cls(x_fc), bbox_pred
