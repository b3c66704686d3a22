"""PlainConvNet: stride-2 conv-BN-ReLU stages, one output per stage."""

from __future__ import annotations

import torch
from torch import nn


class PlainConvNet(nn.Module):
    """Images ``(B, in_channels, H, W)`` -> one feature map per stage.

    Stage ``i`` has ``base_channels * 2**i`` channels and stride ``2**(i + 1)``; ``out_indices``
    selects which stages are returned.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        num_stages: int = 4,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
    ) -> None:
        super().__init__()
        if not all(0 <= i < num_stages for i in out_indices):
            raise ValueError(f"out_indices {out_indices} must lie in [0, {num_stages})")
        self.out_indices = tuple(out_indices)
        self.stages = nn.ModuleList()
        channels = in_channels
        for i in range(num_stages):
            out = base_channels * 2**i
            self.stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                )
            )
            channels = out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
