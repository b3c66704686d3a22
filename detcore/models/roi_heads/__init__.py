"""RoI heads: the second stage of two-stage detectors, with their extractors and box / mask heads."""

from detcore.models.roi_heads.base_roi_head import BaseRoIHead
from detcore.models.roi_heads.bbox_heads import (
    BBoxHead,
    ConvFCBBoxHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
)
from detcore.models.roi_heads.roi_extractors import BaseRoIExtractor, SingleRoIExtractor
from detcore.models.roi_heads.standard_roi_head import StandardRoIHead

__all__ = [
    "BBoxHead",
    "BaseRoIExtractor",
    "BaseRoIHead",
    "ConvFCBBoxHead",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "SingleRoIExtractor",
    "StandardRoIHead",
]
