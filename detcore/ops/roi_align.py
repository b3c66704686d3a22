"""RoIAlign front: dispatches to the native kernel or the PyTorch reference."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import pair
from ._precision import cast, no_autocast
from .roi_ops_common import check_roi_inputs


def roi_align(
    input: Tensor,
    rois: Tensor,
    output_size: Union[int, Sequence[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> Tensor:
    """Bilinear RoI pooling (Mask R-CNN) with torchvision/mmcv semantics.

    Args:
        input: (B, C, H, W) features.
        rois: (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in image pixels.
        output_size: int or (oh, ow).
        spatial_scale: multiplies roi coordinates to reach feature-map pixels (1 / stride).
        sampling_ratio: samples per bin along each axis; <= 0 means ``ceil(roi_size / output_size)``.
        aligned: if True, roi corners are shifted by -0.5 pixel (pixel-centre model) and rois are not
            enlarged to at least one pixel; False reproduces the legacy Detectron behaviour.

    Returns:
        (K, C, oh, ow) tensor in ``input``'s dtype (float16/bfloat16 inputs are pooled in float32);
        differentiable with respect to ``input``.
    """
    dtype = check_roi_inputs("roi_align", input, rois)
    oh, ow = pair("roi_align", "output_size", output_size)
    if not isinstance(sampling_ratio, int):
        raise TypeError(f"roi_align: 'sampling_ratio' must be an int, got {sampling_ratio!r}")
    sampling_ratio = max(int(sampling_ratio), 0)
    feats, boxes = cast(input, dtype), cast(rois, dtype)
    with no_autocast(input.device):
        out = _run(feats, boxes, oh, ow, float(spatial_scale), sampling_ratio, bool(aligned))
    return cast(out, input.dtype)


def _run(
    feats: Tensor, boxes: Tensor, oh: int, ow: int, scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    if use_native():
        return torch.ops.detcore.roi_align(
            feats.contiguous(), boxes.contiguous(), scale, oh, ow, sampling_ratio, aligned
        )
    return _ref.roi_align(feats, boxes, (oh, ow), scale, sampling_ratio, aligned)
