"""R-FCN's box stage (Dai et al., "R-FCN: Object Detection via Region-based Fully Convolutional Networks").

All learned computation is shared over the whole image: ``conv_new`` (1x1 to 1024 channels + ReLU) on the
stride-16 backbone map, then two 1x1 convs giving position-sensitive score maps, ``conv_cls`` with
``k * k * (C + 1)`` channels and ``conv_reg`` with ``k * k * 4`` (class-agnostic box regression). Per RoI,
position-sensitive RoI pooling (:func:`detcore.ops.ps_roi_pool`) takes bin ``(i, j)`` of a ``k x k`` grid
from score-map group ``(i, j)``, and the ``k * k`` bins vote by averaging into ``C + 1`` scores and 4 deltas.
Targets, losses (softmax cross-entropy, smooth L1) and decoding are :class:`BBoxHead`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.roi_heads.bbox_heads.bbox_head import BBoxHead
from detcore.models.roi_heads.standard_roi_head import StandardRoIHead
from detcore.ops import ps_roi_pool
from detcore.registry import build


class RFCNHead(BBoxHead):
    """Position-sensitive score maps and their pooled votes.

    Args:
        in_channels: channels of the backbone map (2048 for ResNet-101's dilated res5).
        conv_new_channels: width of ``conv_new`` (1024 in the paper).
        group_size: k, the side of the position-sensitive grid (7 in the paper).
        spatial_scale: 1 / stride of the backbone map (1 / 16).
        num_classes: object classes (background excluded).
        reg_class_agnostic: the paper's class-agnostic regression (``4 * k * k`` maps); False gives
            ``4 * C * k * k`` maps.
        Other arguments as :class:`BBoxHead` (coder, losses).
    """

    def __init__(
        self,
        in_channels: int = 2048,
        conv_new_channels: int = 1024,
        group_size: int = 7,
        spatial_scale: float = 1.0 / 16,
        num_classes: int = 80,
        reg_class_agnostic: bool = True,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if init_cfg is None:  # the paper: new layers from N(0, 0.01)
            init_cfg = [
                {"type": "Normal", "override": {"type": "Normal", "name": name, "std": 0.01}}
                for name in ("conv_new", "conv_cls", "conv_reg")
            ]
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            roi_feat_size=group_size,
            reg_class_agnostic=reg_class_agnostic,
            with_avg_pool=True,  # BBoxHead's fc layers are not used: keep them tiny, then drop them
            init_cfg=init_cfg,
            **kwargs,
        )
        del self.fc_cls, self.fc_reg, self.avg_pool
        if int(group_size) < 1:
            raise ValueError(f"RFCNHead: group_size must be >= 1, got {group_size}")
        self.group_size = int(group_size)
        self.spatial_scale = float(spatial_scale)
        k2 = self.group_size**2
        self.conv_new = nn.Conv2d(in_channels, conv_new_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv_cls = nn.Conv2d(conv_new_channels, k2 * (self.num_classes + 1), 1)
        reg_dim = 4 if reg_class_agnostic else 4 * self.num_classes
        self.conv_reg = nn.Conv2d(conv_new_channels, k2 * reg_dim, 1)

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone map ``(B, in, H, W)`` -> cls maps ``(B, k*k*(C+1), H, W)``, reg maps ``(B, k*k*4, H, W)``;
        channel ``(d * k + i) * k + j`` scores output ``d`` at grid cell ``(i, j)``."""
        h = self.relu(self.conv_new(x))
        return self.conv_cls(h), self.conv_reg(h)

    def forward(self, x: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Map ``(B, in, H, W)`` and RoIs ``(K, 5)`` (image pixels) -> ``cls_score`` ``(K, C + 1)`` and
        ``bbox_pred`` ``(K, 4)``: the average of the ``k x k`` position-sensitive bins."""
        cls_maps, reg_maps = self.score_maps(x)
        k = self.group_size
        cls_score = ps_roi_pool(cls_maps, rois, k, self.spatial_scale).mean(dim=(2, 3))
        bbox_pred = ps_roi_pool(reg_maps, rois, k, self.spatial_scale).mean(dim=(2, 3))
        return cls_score, bbox_pred


class RFCNRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` whose box branch is :class:`RFCNHead` on the single backbone map: no RoI
    extractor (the pooling is position-sensitive, inside the head), no mask branch."""

    def init_bbox_head(
        self, bbox_roi_extractor: Mapping[str, Any] | None, bbox_head: Mapping[str, Any]
    ) -> None:
        name = type(self).__name__
        if bbox_roi_extractor is not None:
            raise ValueError(f"{name}: R-FCN pools inside its head; remove bbox_roi_extractor")
        self.bbox_head = build("roi_head", bbox_head, where=f"{name}.bbox_head")
        if not isinstance(self.bbox_head, RFCNHead):
            raise ValueError(f"{name}: bbox_head must be an RFCNHead, got {type(self.bbox_head).__name__}")

    def _bbox_forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> dict[str, torch.Tensor]:
        """RoIs ``(K, 5)`` -> ``cls_score`` ``(K, C + 1)``, ``bbox_pred`` ``(K, 4)`` from the last map."""
        cls_score, bbox_pred = self.bbox_head(feats[-1], rois)
        return {"cls_score": cls_score, "bbox_pred": bbox_pred, "bbox_feats": None}
