"""``RetinaHead``: RetinaNet's dense head, an :class:`AnchorHead` with two conv towers.

Per level: ``stacked_convs`` 3x3 ConvModules (ReLU) for classification (``cls_convs``) and as many
for regression (``reg_convs``), then 3x3 convs ``retina_cls`` (``A * num_classes`` sigmoid logits)
and ``retina_reg`` (``A * 4`` deltas). The towers and the predictors are shared across levels.
``retina_cls``'s bias starts at ``-log((1 - 0.01) / 0.01)`` so every anchor begins with a foreground
probability of 0.01 (the paper's prior).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.dense_heads import AnchorHead
from detcore.models.layers import ConvModule


class RetinaHead(AnchorHead):
    """RetinaNet head.

    Args:
        num_classes: object classes (background excluded).
        in_channels: channels of the neck's outputs.
        stacked_convs: 3x3 convs in each tower.
        conv_cfg / norm_cfg: for the tower ConvModules (no norm by default).
        anchor_generator: 9 anchors per location (3 octave scales from 4, ratios 0.5/1/2) at strides
            8 to 128 by default.
        loss_cls / loss_bbox: sigmoid focal loss (gamma 2, alpha 0.25) and L1 on the deltas by default.
        init_cfg: Normal(std 0.01) on every Conv2d; ``retina_cls`` bias from the prior probability 0.01.
        **kwargs: the remaining :class:`AnchorHead` arguments (feat_channels, bbox_coder, train_cfg, ...).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        stacked_convs: int = 4,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 3,
            "ratios": [0.5, 1.0, 2.0], "strides": [8, 16, 32, 64, 128],
        },
        loss_cls: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0,
        },
        loss_bbox: Mapping[str, Any] = {"type": "L1Loss", "loss_weight": 1.0},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.01,
            "override": {"type": "Normal", "name": "retina_cls", "std": 0.01, "bias_prob": 0.01},
        },
        **kwargs: Any,
    ) -> None:
        if int(stacked_convs) < 0:
            raise ValueError(f"RetinaHead: stacked_convs must be >= 0, got {stacked_convs}")
        self.stacked_convs = int(stacked_convs)
        self.conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        super().__init__(
            num_classes, in_channels, anchor_generator=anchor_generator, loss_cls=loss_cls,
            loss_bbox=loss_bbox, init_cfg=init_cfg, **kwargs,
        )

    def _init_layers(self) -> None:
        self.relu = nn.ReLU(inplace=True)
        # plain ModuleLists (no init_weights of their own): the head's Normal init reaches the convs
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            chn = self.in_channels if i == 0 else self.feat_channels
            for tower in (self.cls_convs, self.reg_convs):
                tower.append(
                    ConvModule(chn, self.feat_channels, 3, stride=1, padding=1,
                               conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
                )
        chn = self.in_channels if self.stacked_convs == 0 else self.feat_channels
        self.retina_cls = nn.Conv2d(chn, self.num_base_priors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(chn, self.num_base_priors * 4, 3, padding=1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level ``(B, C, h, w)`` -> ``cls_score`` ``(B, A * num_classes, h, w)``, ``bbox_pred``
        ``(B, A * 4, h, w)``."""
        cls_feat = x
        reg_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)
