"""M2Det's scale-wise feature aggregation module (SFAM; Zhao et al., AAAI 2019, Fig. 3 and Eq. 2-3).

For each scale ``s`` the ``L`` levels' maps of that scale are concatenated along channels,
``X_s = [x_s^1, ..., x_s^L]`` (``C = L * c`` channels), then reweighted by a squeeze-and-excitation
channel attention: ``z = mean over H, W of X_s`` (C,), ``w = sigmoid(W2 relu(W1 z))`` with
``W1: C -> C / r`` and ``W2: C / r -> C`` (fully connected, with bias), and ``out = w * X_s``.
Each scale has its own attention weights. With ``attention = False`` only the concatenation is done.

State-dict keys: ``attentions.{s}.fc1.{weight,bias}`` and ``attentions.{s}.fc2.{weight,bias}``
(1x1 convs, i.e. fully connected layers on the pooled vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ChannelAttention(nn.Module):
    """SE block: ``(B, C, H, W)`` -> the same, each channel scaled by a weight in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"ChannelAttention: reduction {reduction} must be in [1, channels={channels}]")
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def weights(self, x: Tensor) -> Tensor:
        """The ``(B, C, 1, 1)`` channel weights of ``x``."""
        return torch.sigmoid(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x)


class SFAM(nn.Module):
    """Scale-wise concatenation of every level's maps plus channel attention per scale.

    Args:
        num_levels: TUMs ``L`` (paper: 8).
        channels: channels of each TUM output (paper Fig. 4: 128); every scale gets ``L * channels``.
        num_scales: scales per TUM (paper: 6).
        reduction: SE reduction ratio ``r`` (paper: 16).
        attention: the channel attention (False: concatenation only, the paper's "w/o SFAM" ablation
            keeps the concatenation).

    Forward: ``levels`` (``L`` lists of ``num_scales`` maps ``(B, channels, h_s, w_s)``) -> tuple of
    ``num_scales`` maps ``(B, L * channels, h_s, w_s)``.
    """

    def __init__(
        self, num_levels: int, channels: int, num_scales: int, reduction: int = 16, attention: bool = True
    ) -> None:
        super().__init__()
        self.num_levels, self.channels, self.num_scales = num_levels, channels, num_scales
        self.out_channels = num_levels * channels
        if attention:
            self.attentions = nn.ModuleList(
                ChannelAttention(self.out_channels, reduction) for _ in range(num_scales)
            )

    def forward(self, levels: Sequence[Sequence[Tensor]]) -> tuple[Tensor, ...]:
        if len(levels) != self.num_levels or any(len(lv) != self.num_scales for lv in levels):
            raise ValueError(
                f"SFAM: expected {self.num_levels} levels of {self.num_scales} maps, got "
                f"{[len(lv) for lv in levels]}"
            )
        outs = []
        for s in range(self.num_scales):
            x = torch.cat([lv[s] for lv in levels], dim=1)
            outs.append(self.attentions[s](x) if hasattr(self, "attentions") else x)
        return tuple(outs)
