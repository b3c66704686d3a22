"""det-plugin-fsaf: FSAF's anchor-free head with online feature selection, its centre-region assigner
and the (top, bottom, left, right) box coder."""

from det_plugin_fsaf.center_region_assigner import CenterRegionAssigner
from det_plugin_fsaf.detector import FSAF
from det_plugin_fsaf.fsaf_head import FSAFHead
from det_plugin_fsaf.tblr_coder import TBLRBBoxCoder, bboxes2tblr, tblr2bboxes

__version__ = "0.1.0"
__all__ = ["FSAF", "CenterRegionAssigner", "FSAFHead", "TBLRBBoxCoder", "__version__", "bboxes2tblr",
           "tblr2bboxes"]
