"""``DoubleHeadRoIHead``: a :class:`StandardRoIHead` whose box head gets two RoI features: the RoIs as
given for classification, and the RoIs enlarged about their centres by ``reg_roi_scale_factor`` for
regression (more context for the conv head). Targets, losses, sampling and test are Faster R-CNN's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from detcore.models.roi_heads.standard_roi_head import StandardRoIHead


class DoubleHeadRoIHead(StandardRoIHead):
    """Args: ``reg_roi_scale_factor`` (1.3 in the reference's config; each RoI's width and height are
    multiplied by it for the regression branch), then :class:`StandardRoIHead`'s."""

    def __init__(self, reg_roi_scale_factor: float, **kwargs: Any) -> None:
        if not reg_roi_scale_factor > 0:
            raise ValueError(
                f"DoubleHeadRoIHead: reg_roi_scale_factor must be > 0, got {reg_roi_scale_factor}"
            )
        super().__init__(**kwargs)
        self.reg_roi_scale_factor = float(reg_roi_scale_factor)

    def _bbox_forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> dict[str, torch.Tensor]:
        """RoIs ``(K, 5)`` -> ``cls_score`` ``(K, C + 1)``, ``bbox_pred`` ``(K, 4C | 4)``, ``bbox_feats``
        (the classification features)."""
        inputs = feats[: self.bbox_roi_extractor.num_inputs]
        cls_feats = self.bbox_roi_extractor(inputs, rois)
        reg_feats = self.bbox_roi_extractor(inputs, rois, roi_scale_factor=self.reg_roi_scale_factor)
        if self.with_shared_head:
            cls_feats = self.shared_head(cls_feats)
            reg_feats = self.shared_head(reg_feats)
        cls_score, bbox_pred = self.bbox_head(cls_feats, reg_feats)
        return {"cls_score": cls_score, "bbox_pred": bbox_pred, "bbox_feats": cls_feats}
