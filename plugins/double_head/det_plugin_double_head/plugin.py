"""The ``double_head`` plugin: registers the RoI head DoubleHeadRoIHead and the box head
DoubleConvFCBBoxHead (the detector is det-plugin-rcnn's FasterRCNN)."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_double_head.double_bbox_head import DoubleConvFCBBoxHead
from det_plugin_double_head.double_roi_head import DoubleHeadRoIHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"DoubleHeadRoIHead": DoubleHeadRoIHead, "DoubleConvFCBBoxHead": DoubleConvFCBBoxHead}
