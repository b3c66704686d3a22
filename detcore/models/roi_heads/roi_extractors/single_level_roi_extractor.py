"""``SingleRoIExtractor``: pool each RoI from the one FPN level that matches its scale (FPN paper, eq. 1).

A RoI of scale ``s = sqrt(w * h)`` (input-image pixels) goes to level
``floor(log2(s / finest_scale + 1e-6))`` clamped to ``[0, num_levels - 1]``: with ``finest_scale`` 56,
RoIs under 112 px pool from the stride-4 level, 112-224 from stride 8, 224-448 from stride 16 and the
rest from stride 32 (the reference's numerics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.roi_heads.roi_extractors.base_roi_extractor import BaseRoIExtractor


class SingleRoIExtractor(BaseRoIExtractor):
    """Single-level RoI extractor.

    Args:
        roi_layer: the pooling layer table (RoIAlign or RoIPool), built once per level.
        out_channels: feature channels.
        featmap_strides: strides of the levels, finest first (``[4, 8, 16, 32]`` for FPN P2-P5).
        finest_scale: the RoI scale mapped to the boundary of level 0 and 1 (``2 * finest_scale``).
        init_cfg: weight-init table(s).
    """

    def __init__(
        self,
        roi_layer: Mapping[str, Any],
        out_channels: int,
        featmap_strides: Sequence[int],
        finest_scale: int = 56,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(roi_layer, out_channels, featmap_strides, init_cfg)
        self.finest_scale = finest_scale

    def map_roi_levels(self, rois: torch.Tensor, num_levels: int) -> torch.Tensor:
        """Level index ``(K,)`` long of each RoI ``(K, 5)`` by its scale."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        target_lvls = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return target_lvls.clamp(min=0, max=num_levels - 1).long()

    def forward(
        self, feats: Sequence[torch.Tensor], rois: torch.Tensor, roi_scale_factor: float | None = None
    ) -> torch.Tensor:
        """Pooled features ``(K, C, out_h, out_w)`` of ``rois`` ``(K, 5)`` ``[batch_idx, x1, y1, x2, y2]``.

        ``feats`` are the first ``num_inputs`` levels ``(B, C, H_l, W_l)``. The level is chosen from the
        RoI as given; ``roi_scale_factor`` then enlarges (or shrinks) each RoI about its centre before
        pooling. A level that no RoI maps to adds zero (times its features, keeping every level in the
        graph as the reference does for distributed training).
        """
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(f"{type(self).__name__}: rois must be (K, 5), got {tuple(rois.shape)}")
        if len(feats) > len(self.roi_layers):
            raise ValueError(
                f"{type(self).__name__}: {len(feats)} feature levels but {len(self.roi_layers)} strides"
            )
        out_size = self.roi_layers[0].output_size
        num_levels = len(feats)
        roi_feats = feats[0].new_zeros(rois.size(0), self.out_channels, *out_size)
        if num_levels == 1:
            if rois.size(0) == 0:
                return roi_feats
            if roi_scale_factor is not None:
                rois = self.roi_rescale(rois, roi_scale_factor)
            return self.roi_layers[0](feats[0], rois)
        target_lvls = self.map_roi_levels(rois, num_levels)
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        for i in range(num_levels):
            inds = torch.nonzero(target_lvls == i, as_tuple=False).squeeze(1)
            if inds.numel() > 0:
                roi_feats[inds] = self.roi_layers[i](feats[i], rois[inds]).to(roi_feats.dtype)
            else:
                roi_feats = roi_feats + feats[i].sum() * 0.0
        return roi_feats
