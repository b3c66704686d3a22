"""det-plugin-cascade: Cascade R-CNN and Cascade Mask R-CNN (a multi-stage RoI head on the R-CNN family)."""

from det_plugin_cascade.cascade_rcnn import CascadeRCNN
from det_plugin_cascade.cascade_roi_head import CascadeRoIHead

__version__ = "0.1.0"
__all__ = ["CascadeRCNN", "CascadeRoIHead", "__version__"]
