"""det-plugin-grid-rcnn: Grid R-CNN (Plus): grid-point heatmaps instead of box regression."""

from det_plugin_grid_rcnn.detector import GridRCNN
from det_plugin_grid_rcnn.grid_head import GridHead, grid_neighbors
from det_plugin_grid_rcnn.grid_roi_head import GridRoIHead, random_jitter

__version__ = "0.1.0"
__all__ = ["GridHead", "GridRCNN", "GridRoIHead", "__version__", "grid_neighbors", "random_jitter"]
