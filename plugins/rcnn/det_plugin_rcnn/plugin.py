"""The ``rcnn`` plugin: registers RPNHead (kind ``dense_head``) and the detectors RPN, FastRCNN and
FasterRCNN, MaskRCNN. The RoI machinery they use (StandardRoIHead, the bbox heads, SingleRoIExtractor,
FCNMaskHead, TwoStageDetector) is the kernel's library, shared with the later RoI-based families."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_rcnn.detectors import RPN, FasterRCNN, FastRCNN
from det_plugin_rcnn.mask_rcnn import MaskRCNN
from det_plugin_rcnn.rpn_head import RPNHead
from det_plugin_rcnn.shared_heads import ResLayer
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"RPN": RPN, "FastRCNN": FastRCNN, "FasterRCNN": FasterRCNN, "MaskRCNN": MaskRCNN}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"RPNHead": RPNHead}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"ResLayer": ResLayer}  # the C4 RoI shared head (res5 per RoI)
