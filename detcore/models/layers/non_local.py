"""``NonLocal2d``: the non-local block (Wang et al., "Non-local Neural Networks", 2018).

``y = x + conv_out(softmax(theta(x)^T phi(x)) g(x))``: every position of ``(B, C, H, W)`` is replaced
by a weighted sum over all positions, added back to the input. Submodule and state-dict names are the
reference's (``g``, ``conv_out``, ``theta``, ``phi``, each a 1x1 :class:`ConvModule`). ``conv_out``
(or its norm) starts at zero, so a fresh block is the identity. Used by the balanced feature
pyramid's refine step and as a backbone plugin layer.
"""

from __future__ import annotations

import torch
from torch import nn

from detcore.models.init import constant_init, normal_init
from detcore.models.layers.conv_module import ConvModule

MODES = ("embedded_gaussian", "dot_product", "gaussian")


class NonLocal2d(nn.Module):
    """Non-local block on ``(B, in_channels, H, W)`` -> same shape.

    Args:
        in_channels: channels of the input and the output.
        reduction: the embedding has ``max(in_channels // reduction, 1)`` channels.
        use_scale: divide the embedded-Gaussian affinities by ``sqrt(embedding channels)``.
        conv_cfg / norm_cfg: for the 1x1 convs (the norm only on ``conv_out``).
        mode: ``embedded_gaussian`` (softmax of ``theta^T phi``), ``dot_product`` (``theta^T phi`` over
            the number of positions) or ``gaussian`` (softmax of ``x^T x``; no ``theta`` / ``phi``).
        zeros_init: start ``conv_out`` (or its norm) at zero, making the block the identity.
    """

    _abbr_ = "nonlocal_block"

    def __init__(
        self,
        in_channels: int,
        reduction: int = 2,
        use_scale: bool = True,
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        mode: str = "embedded_gaussian",
        zeros_init: bool = True,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"NonLocal2d: mode must be one of {MODES}, got {mode!r}")
        if in_channels < 1 or reduction < 1:
            raise ValueError(
                f"NonLocal2d: need in_channels >= 1 and reduction >= 1, got {in_channels}, {reduction}"
            )
        self.in_channels = in_channels
        self.inter_channels = max(in_channels // reduction, 1)
        self.use_scale = use_scale
        self.mode = mode
        self.zeros_init = zeros_init
        inter = self.inter_channels
        self.g = ConvModule(in_channels, inter, 1, conv_cfg=conv_cfg, act_cfg=None)
        self.conv_out = ConvModule(inter, in_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        if mode != "gaussian":
            self.theta = ConvModule(in_channels, inter, 1, conv_cfg=conv_cfg, act_cfg=None)
            self.phi = ConvModule(in_channels, inter, 1, conv_cfg=conv_cfg, act_cfg=None)
        self.init_weights()

    def init_weights(self, std: float = 0.01) -> None:
        """Normal(std) embeddings with zero bias; ``conv_out`` (its norm, if any) zero with ``zeros_init``."""
        for name in ("g", "theta", "phi"):
            if hasattr(self, name):
                normal_init(getattr(self, name).conv, std=std)
        if not self.zeros_init:
            normal_init(self.conv_out.conv, std=std)
        elif self.conv_out.with_norm:
            constant_init(self.conv_out.norm, 0)
        else:
            constant_init(self.conv_out.conv, 0)

    def pairwise_weight(self, theta_x: torch.Tensor, phi_x: torch.Tensor) -> torch.Tensor:
        """Affinities ``(B, HW, HW)`` of ``theta_x`` ``(B, HW, c)`` and ``phi_x`` ``(B, c, HW)``."""
        weight = torch.matmul(theta_x, phi_x)
        if self.mode == "dot_product":
            return weight / weight.shape[-1]
        if self.mode == "embedded_gaussian" and self.use_scale:
            weight = weight / theta_x.shape[-1] ** 0.5
        return weight.softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g_x = self.g(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
        if self.mode == "gaussian":
            theta_x = x.view(n, self.in_channels, -1).permute(0, 2, 1)
            phi_x = x.view(n, self.in_channels, -1)
        else:
            theta_x = self.theta(x).view(n, self.inter_channels, -1).permute(0, 2, 1)
            phi_x = self.phi(x).view(n, self.inter_channels, -1)
        y = torch.matmul(self.pairwise_weight(theta_x, phi_x), g_x)
        y = y.permute(0, 2, 1).reshape(n, self.inter_channels, h, w)
        return x + self.conv_out(y)
