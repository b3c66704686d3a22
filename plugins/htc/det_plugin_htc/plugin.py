"""The ``htc`` plugin: registers HybridTaskCascadeRoIHead and HTCMaskHead (kind ``roi_head``) and the
HybridTaskCascade detector. The RPN comes from det-plugin-rcnn, the cascade from det-plugin-cascade,
FusedSemanticHead and the box heads and extractors from the kernel's library."""

from __future__ import annotations

from collections.abc import Mapping

from det_plugin_htc.htc import HybridTaskCascade
from det_plugin_htc.htc_mask_head import HTCMaskHead
from det_plugin_htc.htc_roi_head import HybridTaskCascadeRoIHead
from detcore.hookspecs import Factory, hookimpl


@hookimpl
def detcore_register_detectors() -> Mapping[str, Factory]:
    return {"HybridTaskCascade": HybridTaskCascade}


@hookimpl
def detcore_register_roi_heads() -> Mapping[str, Factory]:
    return {"HybridTaskCascadeRoIHead": HybridTaskCascadeRoIHead, "HTCMaskHead": HTCMaskHead}
