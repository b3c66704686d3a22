"""Position-sensitive RoI pooling front (R-FCN): native kernel or PyTorch reference."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import pair
from ._precision import cast, no_autocast
from .roi_ops_common import check_roi_inputs


def ps_roi_pool(
    input: Tensor, rois: Tensor, output_size: Union[int, Sequence[int]], spatial_scale: float = 1.0
) -> Tensor:
    """Position-sensitive RoI average pooling (Dai et al., R-FCN, NIPS 2016), as the R-FCN Caffe layer.

    Args:
        input: (B, D * oh * ow, H, W) position-sensitive score maps; channel ``(d * oh + i) * ow + j`` scores
            output channel ``d`` at bin ``(i, j)``.
        rois: (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in image pixels; corners are rounded to whole
            pixels and the roi spans ``x2 - x1 + 1`` of them before scaling.
        output_size: the group size k (int) or (oh, ow).
        spatial_scale: multiplies roi coordinates to reach feature-map pixels (1 / stride).

    Returns:
        (K, D, oh, ow): bin ``(i, j)`` of output channel ``d`` is the mean of input channel
        ``(d * oh + i) * ow + j`` over the bin's pixels (0 for an empty bin). Differentiable in ``input``.
    """
    op = "ps_roi_pool"
    dtype = check_roi_inputs(op, input, rois)
    oh, ow = pair(op, "output_size", output_size)
    if input.shape[1] % (oh * ow):
        raise ValueError(
            f"{op}: 'input' has {input.shape[1]} channels, which must be output_dim * {oh} * {ow} "
            f"(one group of {oh * ow} score maps per output channel)"
        )
    feats, boxes = cast(input, dtype), cast(rois, dtype)
    with no_autocast(input.device):
        if use_native():
            out = torch.ops.detcore.ps_roi_pool(
                feats.contiguous(), boxes.contiguous(), float(spatial_scale), oh, ow
            )
        else:
            out = _ref.ps_roi_pool(feats, boxes, (oh, ow), float(spatial_scale))
    return cast(out, input.dtype)
