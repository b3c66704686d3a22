"""TridentNet's backbone (Li et al., "Scale-Aware Trident Networks for Object Detection", ICCV 2019).

A trident block runs ``num_branch`` parallel branches that share every weight; only the 3x3 conv's
dilation differs between them (1, 2, 3 by default), so the branches see the same features at
receptive fields of different size. :class:`TridentResNet` is a ResNet whose last built stage (res4 of
the C4 detector, ``num_stages = 3``) is made of trident blocks; its input is one tensor, its output the
branches concatenated along the batch: ``(num_branch * B, C, H, W)`` ordered branch-major (branch 0's
images first). At test time with ``test_branch_idx >= 0`` only that branch runs: ``(B, C, H, W)``.

State-dict keys are those of the plain ResNet (a trident conv keeps ``conv2.weight``), so the
reference's TridentNet checkpoints and the plain ImageNet weights load as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from det_plugin_resnet.blocks import Bottleneck
from det_plugin_resnet.res_layer import ResLayer
from det_plugin_resnet.resnet import ResNet
from torch import Tensor, nn


class TridentConv(nn.Module):
    """One conv weight applied with a different dilation (and padding = dilation) per branch.

    ``forward(inputs)`` takes a list of ``num_branch`` tensors (training, or ``test_branch_idx = -1``)
    and returns one output per branch; in eval mode with ``test_branch_idx >= 0`` it takes a list of one
    tensor and applies the dilation of branch ``test_branch_idx``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        trident_dilations: Sequence[int] = (1, 2, 3),
        test_branch_idx: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.dilations = tuple(int(d) for d in trident_dilations)
        self.num_branch = len(self.dilations)
        if not -1 <= test_branch_idx < self.num_branch:
            raise ValueError(
                f"TridentConv: test_branch_idx must be -1 or a branch in [0, {self.num_branch}), "
                f"got {test_branch_idx}"
            )
        self.test_branch_idx = test_branch_idx
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.Conv2d``: Kaiming uniform (a = sqrt(5)); bias uniform in +-1/sqrt(fan_in)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * self.kernel_size**2)
            nn.init.uniform_(self.bias, -bound, bound)

    def branch_dilations(self) -> tuple[int, ...]:
        """The dilations of the branches that run now."""
        if self.training or self.test_branch_idx == -1:
            return self.dilations
        return (self.dilations[self.test_branch_idx],)

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        dilations = self.branch_dilations()
        if len(inputs) != len(dilations):
            raise ValueError(f"TridentConv: {len(inputs)} inputs for {len(dilations)} running branches")
        return [
            F.conv2d(x, self.weight, self.bias, self.stride, padding=d * (self.kernel_size // 2), dilation=d)
            for x, d in zip(inputs, dilations)
        ]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"trident_dilations={self.dilations}, test_branch_idx={self.test_branch_idx}"
        )


class TridentBottleneck(Bottleneck):
    """A Bottleneck whose 3x3 conv is a :class:`TridentConv`; it maps a list of branch inputs to a list
    of branch outputs (a single tensor is first repeated for every running branch). With
    ``concat_output`` (the stage's last block) the outputs are concatenated along the batch."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        trident_dilations: Sequence[int] = (1, 2, 3),
        test_branch_idx: int = 1,
        concat_output: bool = False,
        **kwargs: Any,
    ) -> None:
        for key in ("dcn", "plugins"):
            if kwargs.get(key):
                raise ValueError(f"TridentBottleneck: '{key}' is not supported in trident blocks")
        if kwargs.get("groups", 1) != 1:
            raise ValueError("TridentBottleneck: grouped 3x3 convs (ResNeXt) are not supported")
        kwargs.pop("dilation", None)  # the trident dilations replace the stage's
        super().__init__(inplanes, planes, **kwargs)
        self.trident_dilations = tuple(trident_dilations)
        self.num_branch = len(self.trident_dilations)
        self.test_branch_idx = test_branch_idx
        self.concat_output = concat_output
        self.conv2 = TridentConv(
            planes, planes, 3, stride=self.conv2_stride, trident_dilations=self.trident_dilations,
            test_branch_idx=test_branch_idx, bias=False,
        )  # fmt: skip

    def forward(self, x: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
        if isinstance(x, Tensor):
            running = self.num_branch if (self.training or self.test_branch_idx == -1) else 1
            x = [x] * running
        outs = [self.relu(self.norm1(self.conv1(b))) for b in x]
        outs = [self.relu(self.norm2(b)) for b in self.conv2(outs)]
        outs = [self.norm3(self.conv3(b)) for b in outs]
        identity = list(x) if self.downsample is None else [self.downsample(b) for b in x]
        outs = [self.relu(o + i) for o, i in zip(outs, identity)]
        return torch.cat(outs, 0) if self.concat_output else outs


class TridentResNet(ResNet):
    """ResNet with trident blocks in its last stage (``num_stages = 3`` for the C4 detector: res4).

    Args:
        depth: 50, 101 or 152 (Bottleneck ResNets).
        num_branch: branches (3); ``len(trident_dilations)`` must equal it.
        test_branch_idx: the branch run at test time (1: dilation 2, TridentNet Fast); -1 runs all.
        trident_dilations: the 3x3 conv's dilation per branch ((1, 2, 3)).
        **kwargs: the :class:`ResNet` arguments (``num_stages``, ``strides``, ``style``, ``norm_cfg``, ...).
    """

    def __init__(
        self,
        depth: int,
        num_branch: int = 3,
        test_branch_idx: int = 1,
        trident_dilations: Sequence[int] = (1, 2, 3),
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        trident_dilations = tuple(int(d) for d in trident_dilations)
        if len(trident_dilations) != num_branch:
            raise ValueError(
                f"{name}: trident_dilations {trident_dilations} need one entry per branch ({num_branch})"
            )
        if not -1 <= test_branch_idx < num_branch:
            raise ValueError(
                f"{name}: test_branch_idx must be -1 or in [0, {num_branch}), got {test_branch_idx}"
            )
        super().__init__(depth, **kwargs)
        if self.block is not Bottleneck:
            raise ValueError(
                f"{name}: trident blocks need a Bottleneck ResNet (depth >= 50), got depth {depth}"
            )
        if self.dcn is not None or self.plugins:
            raise ValueError(f"{name}: dcn and plugins are not supported with trident blocks")
        self.num_branch = num_branch
        self.test_branch_idx = test_branch_idx
        self.trident_dilations = trident_dilations
        last = self.num_stages - 1
        planes = self.base_channels * 2**last
        expansion = Bottleneck.expansion
        inplanes = self.stem_channels if last == 0 else self.base_channels * 2 ** (last - 1) * expansion
        layer = ResLayer(
            block=TridentBottleneck,
            inplanes=inplanes,
            planes=planes,
            num_blocks=self.stage_blocks[last],
            stride=self.strides[last],
            avg_down=self.avg_down,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            style=self.style,
            with_cp=self.with_cp,
            trident_dilations=trident_dilations,
            test_branch_idx=test_branch_idx,
        )
        layer[len(layer) - 1].concat_output = True
        setattr(self, self.res_layers[last], layer)
        self._freeze_stages()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, 3, H, W) -> the ``out_indices`` stages; the trident stage (and any after it) as
        ``(num_branch * B, ...)`` while training or with ``test_branch_idx = -1``, else ``(B, ...)``."""
        return super().forward(x)

    @property
    def running_branches(self) -> int:
        """Branches in the output now (``num_branch`` while training or with ``test_branch_idx = -1``)."""
        return self.num_branch if (self.training or self.test_branch_idx == -1) else 1


__all__ = ["TridentBottleneck", "TridentConv", "TridentResNet"]
