"""Deformable convolution fronts: ``deform_conv2d`` (DCNv1) and ``modulated_deform_conv2d`` (DCNv2)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import reference as _ref
from ._backend import use_native
from ._checks import check_dim, check_float, check_same, check_tensor, pair
from ._precision import cast, compute_dtype, no_autocast

IntPair = Union[int, Sequence[int]]


def _check(
    op: str,
    input: Tensor,
    offset: Tensor,
    mask: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor],
    stride: IntPair,
    padding: IntPair,
    dilation: IntPair,
    groups: int,
    deform_groups: int,
) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        check_tensor(op, name, t)
        check_float(op, name, t)
        check_dim(op, name, t, 4, "(B, C, H, W)" if name != "weight" else "(C_out, C_in / groups, kh, kw)")
        check_same(op, "input", input, name, t, dtype=False)
    stride_ = pair(op, "stride", stride)
    padding_ = pair(op, "padding", padding, minimum=0)
    dilation_ = pair(op, "dilation", dilation)
    b, c, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    if groups < 1 or deform_groups < 1:
        raise ValueError(f"{op}: 'groups' and 'deform_groups' must be >= 1, got {groups}, {deform_groups}")
    if c % groups or c_out % groups or c_per_group * groups != c:
        raise ValueError(
            f"{op}: input has {c} channels and weight {tuple(weight.shape)}; with groups={groups} "
            "both channel "
            f"counts must divide by groups and weight.shape[1] must be C_in / groups"
        )
    if c % deform_groups:
        raise ValueError(f"{op}: input channels {c} must divide by deform_groups={deform_groups}")
    ho = (h + 2 * padding_[0] - (dilation_[0] * (kh - 1) + 1)) // stride_[0] + 1
    wo = (w + 2 * padding_[1] - (dilation_[1] * (kw - 1) + 1)) // stride_[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{op}: kernel {kh}x{kw} does not fit the padded input {h}x{w}")
    want = (b, 2 * deform_groups * kh * kw, ho, wo)
    if tuple(offset.shape) != want:
        raise ValueError(
            f"{op}: 'offset' must have shape {want} (B, 2*deform_groups*kh*kw, Ho, Wo), "
            f"got {tuple(offset.shape)}"
        )
    if mask is not None:
        check_tensor(op, "mask", mask)
        check_float(op, "mask", mask)
        check_same(op, "input", input, "mask", mask, dtype=False)
        want_m = (b, deform_groups * kh * kw, ho, wo)
        if tuple(mask.shape) != want_m:
            raise ValueError(
                f"{op}: 'mask' must have shape {want_m} (B, deform_groups*kh*kw, Ho, Wo), "
                f"got {tuple(mask.shape)}"
            )
    if bias is not None:
        check_tensor(op, "bias", bias)
        check_float(op, "bias", bias)
        check_same(op, "input", input, "bias", bias, dtype=False)
        if tuple(bias.shape) != (c_out,):
            raise ValueError(f"{op}: 'bias' must have shape ({c_out},), got {tuple(bias.shape)}")
    return stride_, padding_, dilation_


def _run(op, input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    """Compute in float32 for float16/bfloat16 inputs (see compute_dtype) and return ``input``'s dtype."""
    named = [("input", input), ("offset", offset), ("mask", mask), ("weight", weight), ("bias", bias)]
    dtype = compute_dtype(op, named)
    out_dtype = input.dtype
    input, offset, weight = cast(input, dtype), cast(offset, dtype), cast(weight, dtype)
    mask, bias = cast(mask, dtype), cast(bias, dtype)
    with no_autocast(input.device):
        out = _run_impl(input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups)
    return cast(out, out_dtype)


def _run_impl(input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    if use_native():
        return torch.ops.detcore.deform_conv2d(
            input.contiguous(),
            weight.contiguous(),
            offset.contiguous(),
            None if mask is None else mask.contiguous(),
            None if bias is None else bias.contiguous(),
            stride[0],
            stride[1],
            padding[0],
            padding[1],
            dilation[0],
            dilation[1],
            groups,
            deform_groups,
        )
    return _ref.deform_conv2d(
        input, offset, weight, bias, mask, stride, padding, dilation, groups, deform_groups
    )


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    deform_groups: int = 1,
) -> Tensor:
    """Deformable convolution v1.

    ``input`` (B, C, H, W); ``offset`` (B, 2*deform_groups*kh*kw, Ho, Wo) with (dy, dx) pairs per deform
    group and kernel tap (row-major); ``weight`` (C_out, C/groups, kh, kw); ``bias`` (C_out,) or None.
    Returns (B, C_out, Ho, Wo); differentiable in input, offset, weight and bias.
    """
    s, p, d = _check(
        "deform_conv2d", input, offset, None, weight, bias, stride, padding, dilation, groups, deform_groups
    )
    return _run("deform_conv2d", input, offset, None, weight, bias, s, p, d, groups, deform_groups)


def modulated_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    deform_groups: int = 1,
) -> Tensor:
    """Modulated deformable convolution (DCNv2): as :func:`deform_conv2d`, each sample times ``mask``.

    ``mask`` is (B, deform_groups*kh*kw, Ho, Wo) (usually a sigmoid output). Differentiable in all tensors.
    """
    op = "modulated_deform_conv2d"
    check_tensor(op, "mask", mask)
    s, p, d = _check(op, input, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups)
    return _run(op, input, offset, mask, weight, bias, s, p, d, groups, deform_groups)
