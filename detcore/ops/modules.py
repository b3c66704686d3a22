"""nn.Module wrappers of the ops, with the parameter names of the reference checkpoints."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._checks import pair
from .deform_conv import deform_conv2d, modulated_deform_conv2d
from .roi_align import roi_align
from .roi_pool import roi_pool

IntPair = Union[int, Sequence[int]]


class RoIAlign(nn.Module):
    """:func:`detcore.ops.roi_align` as a module: forward(input (B,C,H,W), rois (K,5)) -> (K,C,oh,ow)."""

    def __init__(
        self, output_size: IntPair, spatial_scale: float = 1.0, sampling_ratio: int = 0, aligned: bool = True
    ) -> None:
        super().__init__()
        self.output_size = pair("RoIAlign", "output_size", output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


class RoIPool(nn.Module):
    """:func:`detcore.ops.roi_pool` as a module: forward(input (B,C,H,W), rois (K,5)) -> (K,C,oh,ow)."""

    def __init__(self, output_size: IntPair, spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.output_size = pair("RoIPool", "output_size", output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class _DeformConvBase(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair,
        padding: IntPair,
        dilation: IntPair,
        groups: int,
        deform_groups: int,
        bias: bool,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels {in_channels} and out_channels {out_channels} "
                f"must divide by groups {groups}"
            )
        if in_channels % deform_groups:
            raise ValueError(
                f"{name}: in_channels {in_channels} must divide by deform_groups {deform_groups}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size: Tuple[int, int] = pair(name, "kernel_size", kernel_size)
        self.stride = pair(name, "stride", stride)
        self.padding = pair(name, "padding", padding, minimum=0)
        self.dilation = pair(name, "dilation", dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias: Optional[nn.Parameter]
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weight, zero bias (as the reference initialises them)."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _make_conv_offset(self, per_tap: int) -> nn.Conv2d:
        conv = nn.Conv2d(
            self.in_channels,
            per_tap * self.deform_groups * self.kernel_size[0] * self.kernel_size[1],
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deform_groups={self.deform_groups}, bias={self.bias is not None}"
        )


class DeformConv2d(_DeformConvBase):
    """DCNv1 layer: forward(input (B,C,H,W), offset (B, 2*dg*kh*kw, Ho, Wo)) -> (B, C_out, Ho, Wo)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        deform_groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, deform_groups, bias
        )

    def forward(self, input: Tensor, offset: Tensor) -> Tensor:
        return deform_conv2d(
            input,
            offset,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deform_groups,
        )


class DeformConv2dPack(DeformConv2d):
    """DCNv1 layer that predicts its own offsets with ``conv_offset`` (zero-initialised: starts as a conv)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conv_offset = self._make_conv_offset(2)

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(input, self.conv_offset(input))


class ModulatedDeformConv2d(_DeformConvBase):
    """DCNv2 layer: forward(input, offset (B, 2*dg*kh*kw, Ho, Wo), mask (B, dg*kh*kw, Ho, Wo))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        deform_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, deform_groups, bias
        )

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return modulated_deform_conv2d(
            input,
            offset,
            mask,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deform_groups,
        )


class ModulatedDeformConv2dPack(ModulatedDeformConv2d):
    """DCNv2 layer whose ``conv_offset`` predicts 3*dg*kh*kw channels: dy/dx offsets, then mask logits."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conv_offset = self._make_conv_offset(3)

    def forward(self, input: Tensor) -> Tensor:  # type: ignore[override]
        out = self.conv_offset(input)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return super().forward(input, offset, torch.sigmoid(mask))
