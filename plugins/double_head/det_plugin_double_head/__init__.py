"""det-plugin-double-head: Double-Head R-CNN's RoI head and box head."""

from det_plugin_double_head.double_bbox_head import BasicResBlock, DoubleConvFCBBoxHead
from det_plugin_double_head.double_roi_head import DoubleHeadRoIHead

__version__ = "0.1.0"
__all__ = ["BasicResBlock", "DoubleConvFCBBoxHead", "DoubleHeadRoIHead", "__version__"]
