"""det-plugin-rcnn: the region-proposal network and the R-CNN detectors (RPN, Fast, Faster R-CNN)."""

from det_plugin_rcnn.detectors import RPN, FasterRCNN, FastRCNN
from det_plugin_rcnn.rpn_head import RPNHead

__version__ = "0.1.0"
__all__ = ["RPN", "FastRCNN", "FasterRCNN", "RPNHead", "__version__"]
