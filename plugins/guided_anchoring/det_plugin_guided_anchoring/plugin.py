"""The ``guided_anchoring`` plugin: registers the dense heads GuidedAnchorHead, GARetinaHead and
GARPNHead and the assigner ApproxMaxIoUAssigner. The detectors are RetinaNet (det-plugin-retinanet),
RPN and FasterRCNN (det-plugin-rcnn); the anchors come from the kernel's AnchorGenerator."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_guided_anchoring.approx_max_iou_assigner import ApproxMaxIoUAssigner
from det_plugin_guided_anchoring.ga_retina_head import GARetinaHead
from det_plugin_guided_anchoring.ga_rpn_head import GARPNHead
from det_plugin_guided_anchoring.guided_anchor_head import GuidedAnchorHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Factory]:
    return {"GuidedAnchorHead": GuidedAnchorHead, "GARetinaHead": GARetinaHead, "GARPNHead": GARPNHead}


@hookimpl
def detcore_register_task_utils() -> Mapping[str, Factory]:
    return {"ApproxMaxIoUAssigner": ApproxMaxIoUAssigner}
