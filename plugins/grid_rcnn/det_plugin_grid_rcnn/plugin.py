"""The ``grid_rcnn`` plugin: registers the detector GridRCNN and the RoI heads GridRoIHead and GridHead
(the RPN, the box head and the RoI extractors are det-plugin-rcnn's and the kernel's)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_grid_rcnn.detector import GridRCNN
from det_plugin_grid_rcnn.grid_head import GridHead
from det_plugin_grid_rcnn.grid_roi_head import GridRoIHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"GridRCNN": GridRCNN}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"GridRoIHead": GridRoIHead, "GridHead": GridHead}
