"""RoI box heads: classify RoI features and regress their boxes."""

from detcore.models.roi_heads.bbox_heads.bbox_head import BBoxHead
from detcore.models.roi_heads.bbox_heads.convfc_bbox_head import (
    ConvFCBBoxHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
)

__all__ = ["BBoxHead", "ConvFCBBoxHead", "Shared2FCBBoxHead", "Shared4Conv1FCBBoxHead"]
