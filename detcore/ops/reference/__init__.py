"""Pure-PyTorch reference implementations of the ops in :mod:`detcore.ops`.

They take already validated arguments (the fronts in :mod:`detcore.ops` check inputs) and are
vectorised and differentiable wherever the op is. They are the fallback when ``detcore_native`` is not
installed and the ground truth the native kernels are tested against.
"""

from .box_overlaps import box_overlaps
from .deform_conv import deform_conv2d
from .focal_loss import sigmoid_focal_loss
from .nms import nms, soft_nms
from .roi_align import roi_align
from .roi_pool import roi_pool

__all__ = ["box_overlaps", "deform_conv2d", "nms", "roi_align", "roi_pool", "sigmoid_focal_loss", "soft_nms"]
