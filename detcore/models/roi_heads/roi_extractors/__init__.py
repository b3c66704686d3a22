"""RoI feature extractors: pool fixed-size features for boxes from (multi-level) feature maps."""

from detcore.models.roi_heads.roi_extractors.base_roi_extractor import BaseRoIExtractor
from detcore.models.roi_heads.roi_extractors.single_level_roi_extractor import SingleRoIExtractor

__all__ = ["BaseRoIExtractor", "SingleRoIExtractor"]
