"""``HRModule``: parallel multi-resolution branches followed by a multi-resolution fusion.

Branch ``i`` works at stride ``s * 2**i`` (``s`` the stride of branch 0) with ``in_channels[i]``
channels. After the branches, output ``i`` of the fusion is ``relu(sum_j f_ij(x_j))`` where

- ``f_ii`` is the identity;
- ``f_ij`` for a lower-resolution input (``j > i``): 1x1 conv ``in_channels[j] -> in_channels[i]``,
  norm, nearest upsampling by ``2**(j - i)``;
- ``f_ij`` for a higher-resolution input (``j < i``): ``i - j`` stride-2 3x3 convs, each with a norm;
  the first ``i - j - 1`` keep ``in_channels[j]`` channels and end in a ReLU, the last maps to
  ``in_channels[i]`` without an activation.

State-dict keys are those of the reference checkpoints: ``branches.{i}.{block}.*``,
``fuse_layers.{i}.{j}.{0,1}`` (upsampling path: conv, norm) and ``fuse_layers.{i}.{j}.{k}.{0,1}``
(step ``k`` of a downsampling path); ``fuse_layers.{i}.{i}`` holds nothing.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from torch import Tensor, nn

from detcore.models.layers import build_conv_layer, build_norm_layer


def _conv_norm(
    conv_cfg: Optional[Mapping[str, Any]],
    norm_cfg: Mapping[str, Any],
    cin: int,
    cout: int,
    kernel_size: int,
    stride: int = 1,
    relu: bool = False,
) -> nn.Sequential:
    """``conv (no bias) -> norm [-> ReLU]`` as a Sequential (keys ``0``, ``1``)."""
    layers = [
        build_conv_layer(
            None if conv_cfg is None else dict(conv_cfg),
            cin,
            cout,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        build_norm_layer(dict(norm_cfg), cout)[1],
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """One high-resolution module: list of ``num_branches`` maps -> list of fused maps.

    Args:
        num_branches: number of parallel branches.
        block: block class (``BasicBlock`` or ``Bottleneck`` of det-plugin-resnet; ``expansion``,
            and the signature ``(inplanes, planes, stride, downsample=, with_cp=, conv_cfg=, norm_cfg=)``).
        num_blocks: blocks per branch.
        in_channels: input channels per branch.
        num_channels: ``planes`` of every block per branch (outputs ``num_channels[i] * expansion``).
        multiscale_output: fuse into every branch (True) or into branch 0 only.
        with_cp: activation checkpointing inside the blocks.
        conv_cfg, norm_cfg: layer tables of every conv / norm.

    Input: ``num_branches`` tensors ``(B, in_channels[i], H / 2**i, W / 2**i)`` (relative to branch 0).
    Output: ``num_branches`` (or 1 without ``multiscale_output``) tensors ``(B, c_i, H / 2**i, W / 2**i)``
    with ``c_i = num_channels[i] * block.expansion``.
    """

    def __init__(
        self,
        num_branches: int,
        block: type,
        num_blocks: Sequence[int],
        in_channels: Sequence[int],
        num_channels: Sequence[int],
        multiscale_output: bool = True,
        with_cp: bool = False,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = {"type": "BN"},  # noqa: B006 - read only
    ) -> None:
        super().__init__()
        for what, values in (("num_blocks", num_blocks), ("in_channels", in_channels),
                             ("num_channels", num_channels)):  # fmt: skip
            if len(values) != num_branches:
                raise ValueError(
                    f"HRModule: num_branches ({num_branches}) != len({what}) ({len(values)}: {list(values)})"
                )
        self.num_branches = num_branches
        self.block = block
        self.multiscale_output = multiscale_output
        self.with_cp = with_cp
        self.conv_cfg = conv_cfg
        self.norm_cfg = dict(norm_cfg)
        self.in_channels = [int(c) for c in in_channels]
        self.branches = nn.ModuleList(
            self._make_branch(i, int(num_blocks[i]), int(num_channels[i])) for i in range(num_branches)
        )
        # after the branches, in_channels holds every branch's output channels
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=False)

    @property
    def out_channels(self) -> list[int]:
        """Channels of each output map."""
        n = self.num_branches if self.multiscale_output else 1
        return self.in_channels[:n]

    def _make_branch(self, index: int, num_blocks: int, planes: int) -> nn.Sequential:
        cin, cout = self.in_channels[index], planes * self.block.expansion
        downsample = _conv_norm(self.conv_cfg, self.norm_cfg, cin, cout, 1) if cin != cout else None
        common = {"with_cp": self.with_cp, "conv_cfg": self.conv_cfg, "norm_cfg": self.norm_cfg}
        blocks = [self.block(cin, planes, 1, downsample=downsample, **common)]
        blocks += [self.block(cout, planes, 1, **common) for _ in range(1, num_blocks)]
        self.in_channels[index] = cout
        return nn.Sequential(*blocks)

    def _make_fuse_layers(self) -> Optional[nn.ModuleList]:
        if self.num_branches == 1:
            return None
        channels = self.in_channels
        fuse = nn.ModuleList()
        for i in range(self.num_branches if self.multiscale_output else 1):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    path = _conv_norm(self.conv_cfg, self.norm_cfg, channels[j], channels[i], 1)
                    path.append(nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
                    row.append(path)
                elif j == i:
                    row.append(None)
                else:
                    steps = [
                        _conv_norm(self.conv_cfg, self.norm_cfg, channels[j], channels[j], 3, 2, relu=True)
                        for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_norm(self.conv_cfg, self.norm_cfg, channels[j], channels[i], 3, 2))
                    row.append(nn.Sequential(*steps))
            fuse.append(row)
        return fuse

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        if len(x) != self.num_branches:
            raise ValueError(f"HRModule: expected {self.num_branches} input maps, got {len(x)}")
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        outs = []
        for i, row in enumerate(self.fuse_layers):
            height, width = x[i].shape[-2:]
            y = x[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                # upsampled maps of odd-sized inputs come out one pixel larger: crop to branch i
                y = y + path(x[j])[..., :height, :width]
            outs.append(self.relu(y))
        return outs


__all__ = ["HRModule"]
