"""Pure-PyTorch reference implementations of the ops in :mod:`detcore.ops`.

They take already validated arguments (the fronts in :mod:`detcore.ops` check inputs) and are
vectorised and differentiable wherever the op is. They are the fallback when ``detcore_native`` is not
installed and the ground truth the native kernels are tested against.
"""

from .box_overlaps import box_overlaps
from .deform_conv import deform_conv2d
from .deform_roi_pool import deform_roi_pool
from .focal_loss import sigmoid_focal_loss
from .nms import nms, soft_nms
from .ps_roi_pool import ps_roi_pool
from .roi_align import roi_align
from .roi_pool import roi_pool

__all__ = [
    "box_overlaps",
    "deform_conv2d",
    "deform_roi_pool",
    "nms",
    "ps_roi_pool",
    "roi_align",
    "roi_pool",
    "sigmoid_focal_loss",
    "soft_nms",
]
