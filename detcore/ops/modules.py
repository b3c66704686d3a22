"""nn.Module wrappers of the ops, with the parameter names of the reference checkpoints."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._checks import pair
from .deform_conv import deform_conv2d, modulated_deform_conv2d
from .deform_roi_pool import deform_roi_pool
from .ps_roi_pool import ps_roi_pool
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


class PSRoIPool(nn.Module):
    """:func:`detcore.ops.ps_roi_pool` as a module: forward(input (B,D*k*k,H,W), rois (K,5)) -> (K,D,k,k)."""

    def __init__(self, output_size: IntPair, spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.output_size = pair("PSRoIPool", "output_size", output_size)
        self.spatial_scale = float(spatial_scale)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return ps_roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class DeformRoIPool(nn.Module):
    """:func:`detcore.ops.deform_roi_pool` as a module: forward(input, rois (K,5), offset (K,2,oh,ow) or None)
    -> (K,C,oh,ow)."""

    def __init__(
        self, output_size: IntPair, spatial_scale: float = 1.0, sampling_ratio: int = 0, gamma: float = 0.1
    ) -> None:
        super().__init__()
        self.output_size = pair(type(self).__name__, "output_size", output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.gamma = float(gamma)

    def forward(self, input: Tensor, rois: Tensor, offset: Optional[Tensor] = None) -> Tensor:
        return deform_roi_pool(
            input, rois, offset, self.output_size, self.spatial_scale, self.sampling_ratio, self.gamma
        )

    def _pool_flat(self, input: Tensor, rois: Tensor) -> Tensor:
        """Plain (offset-free) pooling flattened to (K, C*oh*ow): the input of the offset/mask branches."""
        if input.shape[1] != self.output_channels:
            raise ValueError(
                f"{type(self).__name__}: input has {input.shape[1]} channels, expected "
                f"output_channels={self.output_channels}"
            )
        return DeformRoIPool.forward(self, input, rois, None).reshape(rois.shape[0], -1)

    def _fc(self, hidden: int, out: int, depth: int) -> nn.Sequential:
        """Linear/ReLU stack from the flattened pooled features; the last Linear starts at zero."""
        flat = self.output_size[0] * self.output_size[1] * self.output_channels
        layers: list = []
        width = flat
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        last = nn.Linear(width, out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        return nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, gamma={self.gamma}"
        )


class DeformRoIPoolPack(DeformRoIPool):
    """Deformable RoI pooling that predicts its bin offsets (DCN v1, the reference's ``DeformRoIPoolPack``).

    ``offset_fc`` (Linear(C*oh*ow, fc) - ReLU - Linear(fc, fc) - ReLU - Linear(fc, 2*oh*ow), the last layer
    zero-initialised, so the layer starts as RoIAlign) maps the offset-free pooled features of each roi to
    its (K, 2, oh, ow) offsets, which then move the bins. forward(input (B,C,H,W), rois (K,5)) -> (K,C,oh,ow).
    """

    def __init__(
        self,
        output_size: IntPair,
        output_channels: int,
        deform_fc_channels: int = 1024,
        spatial_scale: float = 1.0,
        sampling_ratio: int = 0,
        gamma: float = 0.1,
    ) -> None:
        super().__init__(output_size, spatial_scale, sampling_ratio, gamma)
        self.output_channels = int(output_channels)
        self.deform_fc_channels = int(deform_fc_channels)
        oh, ow = self.output_size
        self.offset_fc = self._fc(self.deform_fc_channels, oh * ow * 2, depth=3)

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:  # type: ignore[override]
        if rois.shape[0] == 0:
            return super().forward(input, rois, None)
        x = self._pool_flat(input, rois)
        offset = self.offset_fc(x).view(rois.shape[0], 2, *self.output_size)
        return super().forward(input, rois, offset)


class ModulatedDeformRoIPoolPack(DeformRoIPool):
    """Modulated deformable RoI pooling (DCNv2, the reference's ``ModulatedDeformRoIPoolPack``).

    As :class:`DeformRoIPoolPack`, plus ``mask_fc`` (Linear(C*oh*ow, fc) - ReLU - Linear(fc, oh*ow), zero-
    initialised last layer, then a sigmoid: every bin starts at weight 0.5) whose (K, 1, oh, ow) output
    multiplies the deformed bins.
    """

    def __init__(
        self,
        output_size: IntPair,
        output_channels: int,
        deform_fc_channels: int = 1024,
        spatial_scale: float = 1.0,
        sampling_ratio: int = 0,
        gamma: float = 0.1,
    ) -> None:
        super().__init__(output_size, spatial_scale, sampling_ratio, gamma)
        self.output_channels = int(output_channels)
        self.deform_fc_channels = int(deform_fc_channels)
        oh, ow = self.output_size
        self.offset_fc = self._fc(self.deform_fc_channels, oh * ow * 2, depth=3)
        self.mask_fc = self._fc(self.deform_fc_channels, oh * ow, depth=2)
        self.mask_fc.append(nn.Sigmoid())

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:  # type: ignore[override]
        if rois.shape[0] == 0:
            return super().forward(input, rois, None)
        x = self._pool_flat(input, rois)
        k = rois.shape[0]
        offset = self.offset_fc(x).view(k, 2, *self.output_size)
        mask = self.mask_fc(x).view(k, 1, *self.output_size)
        return super().forward(input, rois, offset) * mask.to(input.dtype)


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
