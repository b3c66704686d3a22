"""Detection ops: the single place models call NMS, RoI pooling, deformable convs and focal loss.

Every op has a pure-PyTorch reference; when the ``detcore_native`` package (``./native``) is installed its
compiled CPU/CUDA kernels run instead. ``DETCORE_OPS=reference|native|auto`` forces the choice and
:func:`backend` says which is active. See docs/ops.md.
"""

from ._backend import backend, native_available
from .bbox_overlaps import box_overlaps
from .deform_conv import deform_conv2d, modulated_deform_conv2d
from .deform_roi_pool import deform_roi_pool, modulated_deform_roi_pool
from .focal_loss import sigmoid_focal_loss
from .modules import (
    DeformConv2d,
    DeformConv2dPack,
    DeformRoIPool,
    DeformRoIPoolPack,
    ModulatedDeformConv2d,
    ModulatedDeformConv2dPack,
    ModulatedDeformRoIPoolPack,
    PSRoIPool,
    RoIAlign,
    RoIPool,
)
from .nms import batched_nms, multiclass_nms, nms, soft_nms
from .ps_roi_pool import ps_roi_pool
from .roi_align import roi_align
from .roi_pool import roi_pool

__all__ = [
    "DeformConv2d",
    "DeformConv2dPack",
    "DeformRoIPool",
    "DeformRoIPoolPack",
    "ModulatedDeformConv2d",
    "ModulatedDeformConv2dPack",
    "ModulatedDeformRoIPoolPack",
    "PSRoIPool",
    "RoIAlign",
    "RoIPool",
    "backend",
    "batched_nms",
    "box_overlaps",
    "deform_conv2d",
    "deform_roi_pool",
    "modulated_deform_conv2d",
    "modulated_deform_roi_pool",
    "multiclass_nms",
    "native_available",
    "nms",
    "ps_roi_pool",
    "roi_align",
    "roi_pool",
    "sigmoid_focal_loss",
    "soft_nms",
]
