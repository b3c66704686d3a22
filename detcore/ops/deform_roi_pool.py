"""Deformable RoI pooling fronts (DCN v1 and the modulated DCNv2 variant): native kernel or reference."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import check_float, check_same, check_tensor, pair
from ._precision import cast, compute_dtype, no_autocast
from .roi_ops_common import check_roi_inputs


def _check_map(
    op: str, name: str, t: Tensor, rois: Tensor, input: Tensor, channels: int, oh: int, ow: int
) -> None:
    check_tensor(op, name, t)
    check_float(op, name, t)
    check_same(op, "input", input, name, t, dtype=False)
    want = (rois.shape[0], channels, oh, ow)
    if tuple(t.shape) != want:
        raise ValueError(
            f"{op}: '{name}' must have shape {want} (K, {channels}, oh, ow), got {tuple(t.shape)}"
        )


def deform_roi_pool(
    input: Tensor,
    rois: Tensor,
    offset: Optional[Tensor],
    output_size: Union[int, Sequence[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    gamma: float = 0.1,
) -> Tensor:
    """Deformable RoI pooling (Dai et al. 2017) with mmcv's semantics.

    Args:
        input: (B, C, H, W) features.
        rois: (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in image pixels.
        offset: (K, 2, oh, ow) normalised bin offsets, channel 0 along x and 1 along y, or None (then the op
            is RoIAlign with ``aligned=True``). Bin ``(ph, pw)`` moves by
            ``gamma * roi_w * offset[:, 0, ph, pw]``
            pixels along x and ``gamma * roi_h * offset[:, 1, ph, pw]`` along y (feature-map pixels).
        output_size: int or (oh, ow).
        spatial_scale: multiplies roi coordinates to reach feature-map pixels (1 / stride).
        sampling_ratio: bilinear samples per bin axis; <= 0 means ``ceil(roi_size / output_size)``.
        gamma: scale of the offsets.

    Returns:
        (K, C, oh, ow) in ``input``'s dtype (float16/bfloat16 computed in float32); differentiable with
        respect to ``input`` and ``offset``.
    """
    op = "deform_roi_pool"
    dtype = check_roi_inputs(op, input, rois)
    oh, ow = pair(op, "output_size", output_size)
    if not isinstance(sampling_ratio, int):
        raise TypeError(f"{op}: 'sampling_ratio' must be an int, got {sampling_ratio!r}")
    if offset is not None:
        _check_map(op, "offset", offset, rois, input, 2, oh, ow)
        dtype = compute_dtype(op, [("input", input), ("offset", offset)])
    feats, boxes, off = cast(input, dtype), cast(rois, dtype), cast(offset, dtype)
    sr = max(int(sampling_ratio), 0)
    with no_autocast(input.device):
        if use_native():
            out = torch.ops.detcore.deform_roi_pool(
                feats.contiguous(),
                boxes.contiguous(),
                None if off is None else off.contiguous(),
                float(spatial_scale),
                oh,
                ow,
                sr,
                float(gamma),
            )
        else:
            out = _ref.deform_roi_pool(feats, boxes, off, (oh, ow), float(spatial_scale), sr, float(gamma))
    return cast(out, input.dtype)


def modulated_deform_roi_pool(
    input: Tensor,
    rois: Tensor,
    offset: Tensor,
    mask: Tensor,
    output_size: Union[int, Sequence[int]],
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    gamma: float = 0.1,
) -> Tensor:
    """Modulated deformable RoI pooling (Zhu et al. 2019, DCNv2): :func:`deform_roi_pool` times ``mask``.

    ``mask`` is (K, 1, oh, ow): one modulation scalar per bin (usually a sigmoid output) for all channels.
    """
    op = "modulated_deform_roi_pool"
    oh, ow = pair(op, "output_size", output_size)
    check_tensor(op, "rois", rois)
    check_tensor(op, "input", input)
    _check_map(op, "mask", mask, rois, input, 1, oh, ow)
    out = deform_roi_pool(input, rois, offset, (oh, ow), spatial_scale, sampling_ratio, gamma)
    return out * mask.to(out.dtype)
