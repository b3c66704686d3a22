"""``ConvFCBBoxHead``: shared convs and fcs, then separate cls / reg convs and fcs, then the predictors.

::

                                /-> cls convs -> cls fcs -> fc_cls
    shared convs -> shared fcs
                                \\-> reg convs -> reg fcs -> fc_reg

``Shared2FCBBoxHead`` (2 shared fcs of 1024, Faster R-CNN's head) and ``Shared4Conv1FCBBoxHead``
(4 shared 3x3 ConvModules, e.g. with GN, then 1 fc) are its standard settings. Attribute names follow
the reference checkpoints: ``shared_convs.N.conv`` / ``.gn``, ``shared_fcs.N``, ``fc_cls``, ``fc_reg``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.layers import ConvModule
from detcore.models.roi_heads.bbox_heads.bbox_head import BBoxHead


class ConvFCBBoxHead(BBoxHead):
    """A bbox head built from conv and fc stacks.

    Args:
        num_shared_convs / num_shared_fcs: layers shared by both branches.
        num_cls_convs / num_cls_fcs / num_reg_convs / num_reg_fcs: layers of each branch (branch convs
            need ``num_shared_fcs == 0``).
        conv_out_channels: channels of every 3x3 conv; fc_out_channels: width of every fc.
        conv_cfg / norm_cfg: for the ConvModules (no norm by default; ``{type = "GN", num_groups = 32}``).
        init_cfg: default: :class:`BBoxHead`'s, plus Xavier (uniform) on the fcs, biases 0.
        **kwargs: :class:`BBoxHead` arguments (in_channels, num_classes, bbox_coder, losses, ...).
    """

    def __init__(
        self,
        num_shared_convs: int = 0,
        num_shared_fcs: int = 0,
        num_cls_convs: int = 0,
        num_cls_fcs: int = 0,
        num_reg_convs: int = 0,
        num_reg_fcs: int = 0,
        conv_out_channels: int = 256,
        fc_out_channels: int = 1024,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(init_cfg=init_cfg, **kwargs)
        name = type(self).__name__
        counts = (num_shared_convs, num_shared_fcs, num_cls_convs, num_cls_fcs, num_reg_convs, num_reg_fcs)
        if any(int(c) < 0 for c in counts):
            raise ValueError(f"{name}: layer counts must be >= 0, got {counts}")
        if sum(counts) == 0:
            raise ValueError(f"{name}: no conv or fc layer; use BBoxHead for predictors on the raw features")
        if (num_cls_convs > 0 or num_reg_convs > 0) and num_shared_fcs != 0:
            raise ValueError(
                f"{name}: cls/reg convs after shared fcs are not possible (num_shared_fcs must be 0)"
            )
        if not self.with_cls and (num_cls_convs or num_cls_fcs):
            raise ValueError(f"{name}: cls convs/fcs need with_cls = true")
        if not self.with_reg and (num_reg_convs or num_reg_fcs):
            raise ValueError(f"{name}: reg convs/fcs need with_reg = true")
        self.num_shared_convs = int(num_shared_convs)
        self.num_shared_fcs = int(num_shared_fcs)
        self.num_cls_convs = int(num_cls_convs)
        self.num_cls_fcs = int(num_cls_fcs)
        self.num_reg_convs = int(num_reg_convs)
        self.num_reg_fcs = int(num_reg_fcs)
        self.conv_out_channels = int(conv_out_channels)
        self.fc_out_channels = int(fc_out_channels)
        self.conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None

        self.shared_convs, self.shared_fcs, last_layer_dim = self._add_conv_fc_branch(
            self.num_shared_convs, self.num_shared_fcs, self.in_channels, is_shared=True
        )
        self.shared_out_channels = last_layer_dim
        self.cls_convs, self.cls_fcs, self.cls_last_dim = self._add_conv_fc_branch(
            self.num_cls_convs, self.num_cls_fcs, self.shared_out_channels
        )
        self.reg_convs, self.reg_fcs, self.reg_last_dim = self._add_conv_fc_branch(
            self.num_reg_convs, self.num_reg_fcs, self.shared_out_channels
        )
        if self.num_shared_fcs == 0 and not self.with_avg_pool:
            if self.num_cls_fcs == 0:
                self.cls_last_dim *= self.roi_feat_area
            if self.num_reg_fcs == 0:
                self.reg_last_dim *= self.roi_feat_area
        self.relu = nn.ReLU(inplace=True)
        # the predictors are rebuilt on the branch outputs (same attribute, so the same key position)
        if self.with_cls:
            self.fc_cls = nn.Linear(self.cls_last_dim, self.num_classes + 1)
        if self.with_reg:
            out_dim_reg = 4 if self.reg_class_agnostic else 4 * self.num_classes
            self.fc_reg = nn.Linear(self.reg_last_dim, out_dim_reg)
        if init_cfg is None:
            self.init_cfg = list(self.init_cfg) + [
                {
                    "type": "Xavier",
                    "distribution": "uniform",
                    "override": [{"name": "shared_fcs"}, {"name": "cls_fcs"}, {"name": "reg_fcs"}],
                }
            ]

    def _add_conv_fc_branch(
        self, num_branch_convs: int, num_branch_fcs: int, in_channels: int, is_shared: bool = False
    ) -> tuple[nn.ModuleList, nn.ModuleList, int]:
        """``(convs, fcs, output width)`` of one branch reading ``in_channels``-channel RoI features."""
        last_layer_dim = in_channels
        branch_convs = nn.ModuleList()
        for i in range(num_branch_convs):
            conv_in = last_layer_dim if i == 0 else self.conv_out_channels
            branch_convs.append(
                ConvModule(
                    conv_in,
                    self.conv_out_channels,
                    3,
                    padding=1,
                    conv_cfg=self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                )
            )
        if num_branch_convs > 0:
            last_layer_dim = self.conv_out_channels
        branch_fcs = nn.ModuleList()
        if num_branch_fcs > 0:
            # the first fc reads flattened maps unless an earlier fc (shared) already flattened them
            if (is_shared or self.num_shared_fcs == 0) and not self.with_avg_pool:
                last_layer_dim *= self.roi_feat_area
            for i in range(num_branch_fcs):
                fc_in = last_layer_dim if i == 0 else self.fc_out_channels
                branch_fcs.append(nn.Linear(fc_in, self.fc_out_channels))
            last_layer_dim = self.fc_out_channels
        return branch_convs, branch_fcs, last_layer_dim

    def _branch(self, x: torch.Tensor, convs: nn.ModuleList, fcs: nn.ModuleList) -> torch.Tensor:
        for conv in convs:
            x = conv(x)
        if x.dim() > 2:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
        for fc in fcs:
            x = self.relu(fc(x))
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """RoI features ``(N, C, h, w)`` -> ``cls_score`` ``(N, num_classes + 1)``, ``bbox_pred``
        ``(N, 4 * num_classes | 4)``."""
        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
            for fc in self.shared_fcs:
                x = self.relu(fc(x))
        x_cls = self._branch(x, self.cls_convs, self.cls_fcs)
        x_reg = self._branch(x, self.reg_convs, self.reg_fcs)
        cls_score = self.fc_cls(x_cls) if self.with_cls else None
        bbox_pred = self.fc_reg(x_reg) if self.with_reg else None
        return cls_score, bbox_pred


class Shared2FCBBoxHead(ConvFCBBoxHead):
    """Two shared fcs of ``fc_out_channels`` (1024) then ``fc_cls`` / ``fc_reg``."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs: Any) -> None:
        super().__init__(
            num_shared_convs=0,
            num_shared_fcs=2,
            num_cls_convs=0,
            num_cls_fcs=0,
            num_reg_convs=0,
            num_reg_fcs=0,
            fc_out_channels=fc_out_channels,
            **kwargs,
        )


class Shared4Conv1FCBBoxHead(ConvFCBBoxHead):
    """Four shared 3x3 ConvModules (``norm_cfg``, e.g. GN), one shared fc, then ``fc_cls`` / ``fc_reg``."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs: Any) -> None:
        super().__init__(
            num_shared_convs=4,
            num_shared_fcs=1,
            num_cls_convs=0,
            num_cls_fcs=0,
            num_reg_convs=0,
            num_reg_fcs=0,
            fc_out_channels=fc_out_channels,
            **kwargs,
        )
