"""Guided Anchoring (Wang et al., "Region Proposal by Guided Anchoring", CVPR 2019) for detcore."""

from det_plugin_guided_anchoring.approx_max_iou_assigner import ApproxMaxIoUAssigner
from det_plugin_guided_anchoring.feature_adaption import FeatureAdaption
from det_plugin_guided_anchoring.ga_retina_head import GARetinaHead
from det_plugin_guided_anchoring.ga_rpn_head import GARPNHead
from det_plugin_guided_anchoring.guided_anchor_head import GuidedAnchorHead, calc_region

__all__ = ["ApproxMaxIoUAssigner", "FeatureAdaption", "GARPNHead", "GARetinaHead", "GuidedAnchorHead",
           "calc_region"]
