"""Task utilities: prior generators, box coders, IoU calculators, assigners and samplers."""

from detcore.models.task_utils.assign_result import AssignResult
from detcore.models.task_utils.assigners import ATSSAssigner, MaxIoUAssigner, PointAssigner
from detcore.models.task_utils.bbox_coders import (
    DeltaXYWHBBoxCoder,
    DistancePointBBoxCoder,
    LegacyDeltaXYWHBBoxCoder,
    PseudoBBoxCoder,
    bbox2delta,
    bbox2distance,
    delta2bbox,
    distance2bbox,
    legacy_bbox2delta,
    legacy_delta2bbox,
)
from detcore.models.task_utils.gaussian_target import (
    gaussian2D,
    gaussian_radius,
    gen_gaussian_target,
    get_local_maximum,
    get_topk_from_heatmap,
    transpose_and_gather_feat,
)
from detcore.models.task_utils.iou_calculators import BboxOverlaps2D
from detcore.models.task_utils.prior_generators import (
    AnchorGenerator,
    LegacyAnchorGenerator,
    MlvlPointGenerator,
    SSDAnchorGenerator,
)
from detcore.models.task_utils.samplers import (
    BaseSampler,
    CombinedSampler,
    OHEMSampler,
    PseudoSampler,
    RandomSampler,
)
from detcore.models.task_utils.sampling_result import SamplingResult

__all__ = [
    "ATSSAssigner",
    "AnchorGenerator",
    "AssignResult",
    "BaseSampler",
    "CombinedSampler",
    "BboxOverlaps2D",
    "DeltaXYWHBBoxCoder",
    "DistancePointBBoxCoder",
    "LegacyAnchorGenerator",
    "LegacyDeltaXYWHBBoxCoder",
    "MaxIoUAssigner",
    "MlvlPointGenerator",
    "OHEMSampler",
    "PointAssigner",
    "PseudoBBoxCoder",
    "PseudoSampler",
    "RandomSampler",
    "SSDAnchorGenerator",
    "SamplingResult",
    "bbox2delta",
    "bbox2distance",
    "delta2bbox",
    "distance2bbox",
    "gaussian2D",
    "gaussian_radius",
    "gen_gaussian_target",
    "get_local_maximum",
    "get_topk_from_heatmap",
    "legacy_bbox2delta",
    "legacy_delta2bbox",
    "transpose_and_gather_feat",
]
