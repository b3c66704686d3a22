"""RoIPool front: dispatches to the native kernel or the PyTorch reference."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import pair
from ._precision import cast, no_autocast
from .roi_ops_common import check_roi_inputs


def roi_pool(
    input: Tensor, rois: Tensor, output_size: Union[int, Sequence[int]], spatial_scale: float = 1.0
) -> Tensor:
    """Max RoI pooling (Fast R-CNN) with torchvision/mmcv semantics.

    ``input`` (B, C, H, W), ``rois`` (K, 5) ``(batch_index, x1, y1, x2, y2)`` -> (K, C, oh, ow). Corners are
    rounded after scaling; empty bins give 0; the gradient goes to each bin's arg-max.
    """
    dtype = check_roi_inputs("roi_pool", input, rois)
    oh, ow = pair("roi_pool", "output_size", output_size)
    feats, boxes = cast(input, dtype), cast(rois, dtype)
    with no_autocast(input.device):
        out = _run(feats, boxes, oh, ow, float(spatial_scale))
    return cast(out, input.dtype)


def _run(feats: Tensor, boxes: Tensor, oh: int, ow: int, scale: float) -> Tensor:
    if use_native():
        out, _ = torch.ops.detcore.roi_pool(feats.contiguous(), boxes.contiguous(), scale, oh, ow)
        return out
    return _ref.roi_pool(feats, boxes, (oh, ow), scale)
