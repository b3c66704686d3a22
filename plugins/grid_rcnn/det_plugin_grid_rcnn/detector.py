"""``GridRCNN``: Faster R-CNN's composition (backbone -> neck -> RPN -> RoI head) with a
:class:`~det_plugin_grid_rcnn.grid_roi_head.GridRoIHead`; the class only names the detector."""

from __future__ import annotations

from det_plugin_rcnn.detectors import FasterRCNN


class GridRCNN(FasterRCNN):
    """Grid R-CNN (Lu et al., CVPR 2019) and Grid R-CNN Plus: arguments as :class:`FasterRCNN`, the
    ``roi_head`` a ``GridRoIHead`` table."""
