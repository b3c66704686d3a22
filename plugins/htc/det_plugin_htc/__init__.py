"""det-plugin-htc: Hybrid Task Cascade (interleaved box and mask stages, mask information flow, semantic
branch) on det-plugin-cascade."""

from det_plugin_htc.htc import HybridTaskCascade
from det_plugin_htc.htc_mask_head import HTCMaskHead
from det_plugin_htc.htc_roi_head import HybridTaskCascadeRoIHead

__version__ = "0.1.0"
__all__ = ["HTCMaskHead", "HybridTaskCascade", "HybridTaskCascadeRoIHead", "__version__"]
