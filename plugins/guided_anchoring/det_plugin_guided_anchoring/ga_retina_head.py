"""``GARetinaHead``: GA-RetinaNet's head, RetinaNet's towers with guided anchors.

Per level: ``stacked_convs`` 3x3 ConvModules for classification (``cls_convs``) and regression
(``reg_convs``); ``conv_loc`` (1x1) on the classification tower, ``conv_shape`` (1x1) on the
regression tower; each tower adapted to the predicted shapes (``feature_adaption_cls``,
``feature_adaption_reg``), then 3x3 convs ``retina_cls`` and ``retina_reg``. The reference computes the
last two only at the kept locations (masked convs) at inference; here they run everywhere and the
detections use the kept locations only, which gives the same detections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from det_plugin_guided_anchoring.feature_adaption import FeatureAdaption
from det_plugin_guided_anchoring.guided_anchor_head import GuidedAnchorHead
from detcore.models.layers import ConvModule


class GARetinaHead(GuidedAnchorHead):
    """Guided-anchor RetinaNet head.

    Args:
        num_classes / in_channels: as :class:`GuidedAnchorHead`.
        stacked_convs: 3x3 convs per tower.
        conv_cfg / norm_cfg: for the tower ConvModules.
        init_cfg: Normal(0.01) on every Conv2d, ``conv_loc`` and ``retina_cls`` biases from the prior
            probability 0.01 (default).
        **kwargs: the other :class:`GuidedAnchorHead` arguments.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        stacked_convs: int = 4,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.01,
            "override": [
                {"type": "Normal", "name": "conv_loc", "std": 0.01, "bias_prob": 0.01},
                {"type": "Normal", "name": "retina_cls", "std": 0.01, "bias_prob": 0.01},
            ],
        },
        **kwargs: Any,
    ) -> None:
        if int(stacked_convs) < 0:
            raise ValueError(f"GARetinaHead: stacked_convs must be >= 0, got {stacked_convs}")
        self.stacked_convs = int(stacked_convs)
        self.conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        super().__init__(num_classes, in_channels, init_cfg=init_cfg, **kwargs)

    def _init_layers(self) -> None:
        self.relu = nn.ReLU(inplace=True)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            chn = self.in_channels if i == 0 else self.feat_channels
            for tower in (self.cls_convs, self.reg_convs):
                tower.append(ConvModule(chn, self.feat_channels, 3, stride=1, padding=1,
                                        conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg))
        chn = self.in_channels if self.stacked_convs == 0 else self.feat_channels
        num_anchors = self.num_base_priors
        self.conv_loc = nn.Conv2d(chn, 1, 1)
        self.conv_shape = nn.Conv2d(chn, num_anchors * 2, 1)
        self.feature_adaption_cls = FeatureAdaption(chn, self.feat_channels, 3, self.deform_groups)
        self.feature_adaption_reg = FeatureAdaption(chn, self.feat_channels, 3, self.deform_groups)
        self.retina_cls = nn.Conv2d(self.feat_channels, num_anchors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(self.feat_channels, num_anchors * 4, 3, padding=1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One level ``(B, C, H, W)`` -> ``cls_score``, ``bbox_pred``, ``shape_pred``, ``loc_pred``."""
        cls_feat = x
        reg_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        loc_pred = self.conv_loc(cls_feat)
        shape_pred = self.conv_shape(reg_feat)
        cls_feat = self.feature_adaption_cls(cls_feat, shape_pred)
        reg_feat = self.feature_adaption_reg(reg_feat, shape_pred)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat), shape_pred, loc_pred
