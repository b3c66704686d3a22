"""The ``cascade`` plugin: registers CascadeRoIHead (kind ``roi_head``) and the CascadeRCNN detector
(Cascade R-CNN and Cascade Mask R-CNN). The RPN comes from det-plugin-rcnn, the box and mask heads,
extractors and the two-stage detector from the kernel's library."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_cascade.cascade_rcnn import CascadeRCNN
from det_plugin_cascade.cascade_roi_head import CascadeRoIHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"CascadeRCNN": CascadeRCNN}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"CascadeRoIHead": CascadeRoIHead}
