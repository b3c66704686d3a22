"""det-plugin-ms-rcnn: Mask Scoring R-CNN (the MaskIoU head and its RoI head)."""

from det_plugin_ms_rcnn.mask_iou_head import MaskIoUHead, area_ratios, mask_iou_targets
from det_plugin_ms_rcnn.mask_scoring_roi_head import MaskScoringRoIHead
from det_plugin_ms_rcnn.ms_rcnn import MaskScoringRCNN

__version__ = "0.1.0"
__all__ = [
    "MaskIoUHead",
    "MaskScoringRCNN",
    "MaskScoringRoIHead",
    "__version__",
    "area_ratios",
    "mask_iou_targets",
]
