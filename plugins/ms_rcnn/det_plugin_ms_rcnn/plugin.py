"""The ``ms_rcnn`` plugin: registers the detector MaskScoringRCNN and the RoI heads MaskScoringRoIHead
and MaskIoUHead (kind ``roi_head``). Mask R-CNN's parts come from det-plugin-rcnn and the kernel."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_ms_rcnn.mask_iou_head import MaskIoUHead
from det_plugin_ms_rcnn.mask_scoring_roi_head import MaskScoringRoIHead
from det_plugin_ms_rcnn.ms_rcnn import MaskScoringRCNN
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"MaskScoringRCNN": MaskScoringRCNN}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"MaskScoringRoIHead": MaskScoringRoIHead, "MaskIoUHead": MaskIoUHead}
