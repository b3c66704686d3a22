"""Losses (:class:`BaseLoss` modules with ``loss_weight`` and ``reduction``) and their functional forms."""

from detcore.models.losses.accuracy import Accuracy, accuracy
from detcore.models.losses.base_loss import BaseLoss
from detcore.models.losses.cross_entropy_loss import (
    CrossEntropyLoss,
    binary_cross_entropy,
    cross_entropy,
    mask_cross_entropy,
)
from detcore.models.losses.focal_loss import (
    FocalLoss,
    py_focal_loss_with_prob,
    py_sigmoid_focal_loss,
    sigmoid_focal_loss,
)
from detcore.models.losses.gaussian_focal_loss import GaussianFocalLoss, gaussian_focal_loss
from detcore.models.losses.ghm_loss import GHMC, GHMR
from detcore.models.losses.iou_loss import (
    BoundedIoULoss,
    CIoULoss,
    DIoULoss,
    GIoULoss,
    IoULoss,
    bounded_iou_loss,
    ciou_loss,
    diou_loss,
    giou_loss,
    iou_loss,
)
from detcore.models.losses.smooth_l1_loss import (
    BalancedL1Loss,
    L1Loss,
    MSELoss,
    SmoothL1Loss,
    balanced_l1_loss,
    l1_loss,
    mse_loss,
    smooth_l1_loss,
)
from detcore.models.losses.utils import reduce_loss, weight_reduce_loss, weighted_loss

__all__ = [
    "GHMC",
    "GHMR",
    "Accuracy",
    "BaseLoss",
    "BalancedL1Loss",
    "BoundedIoULoss",
    "CIoULoss",
    "CrossEntropyLoss",
    "DIoULoss",
    "FocalLoss",
    "GIoULoss",
    "GaussianFocalLoss",
    "IoULoss",
    "L1Loss",
    "MSELoss",
    "SmoothL1Loss",
    "accuracy",
    "balanced_l1_loss",
    "binary_cross_entropy",
    "bounded_iou_loss",
    "ciou_loss",
    "cross_entropy",
    "diou_loss",
    "gaussian_focal_loss",
    "giou_loss",
    "iou_loss",
    "l1_loss",
    "mask_cross_entropy",
    "mse_loss",
    "py_focal_loss_with_prob",
    "py_sigmoid_focal_loss",
    "reduce_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "weight_reduce_loss",
    "weighted_loss",
]
