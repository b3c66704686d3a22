"""``BaseRoIExtractor``: one RoI pooling layer per feature level, and the RoI rescaling they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.init import BaseModule
from detcore.registry import build


class BaseRoIExtractor(BaseModule):
    """Pools fixed-size features for RoIs from a list of feature maps.

    Args:
        roi_layer: a ``roi_layer`` table (``{type = "RoIAlign", output_size = 7, sampling_ratio = 0}``);
            one layer is built per stride with ``spatial_scale = 1 / stride``.
        out_channels: channels of the feature maps (and of the pooled features).
        featmap_strides: stride of each input level, finest first.
        init_cfg: weight-init table(s) (the pooling layers have no weights).
    """

    component_kinds = {"roi_layer": "roi_layer"}

    def __init__(
        self,
        roi_layer: Mapping[str, Any],
        out_channels: int,
        featmap_strides: Sequence[int],
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if not featmap_strides:
            raise ValueError(f"{type(self).__name__}: featmap_strides must name at least one level")
        self.roi_layers = self.build_roi_layers(roi_layer, featmap_strides)
        self.out_channels = int(out_channels)
        self.featmap_strides = [int(s) for s in featmap_strides]

    @property
    def num_inputs(self) -> int:
        """Number of feature levels the extractor reads."""
        return len(self.featmap_strides)

    def build_roi_layers(self, layer_cfg: Mapping[str, Any], featmap_strides: Sequence[int]) -> nn.ModuleList:
        """One ``roi_layer`` per level, each with ``spatial_scale = 1 / stride``."""
        cfg = dict(layer_cfg)
        if "spatial_scale" in cfg:
            raise ValueError(
                f"{type(self).__name__}.roi_layer: spatial_scale is set per level from featmap_strides; "
                "remove it from the table"
            )
        where = f"{type(self).__name__}.roi_layer"
        return nn.ModuleList(
            build("roi_layer", cfg, where=where, spatial_scale=1.0 / s) for s in featmap_strides
        )

    @staticmethod
    def roi_rescale(rois: torch.Tensor, scale_factor: float) -> torch.Tensor:
        """Scale RoIs ``(K, 5)`` ``[batch_idx, x1, y1, x2, y2]`` by ``scale_factor`` about their centres."""
        cx = (rois[:, 1] + rois[:, 3]) * 0.5
        cy = (rois[:, 2] + rois[:, 4]) * 0.5
        w = (rois[:, 3] - rois[:, 1]) * scale_factor
        h = (rois[:, 4] - rois[:, 2]) * scale_factor
        return torch.stack([rois[:, 0], cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], dim=-1)

    def forward(
        self, feats: Sequence[torch.Tensor], rois: torch.Tensor, roi_scale_factor: float | None = None
    ) -> torch.Tensor:
        """Features ``(K, C, out_h, out_w)`` of RoIs ``(K, 5)`` from ``feats`` (one ``(B, C, H, W)`` per
        level)."""
        raise NotImplementedError
