"""SSD's neck: the L2-normalised first map plus extra (1x1 reduce, 3x3 stride-s) levels.

State-dict keys follow the reference 2.x: ``l2_norm.weight`` and
``extra_layers.{level}.{0|1}.conv.{weight,bias}`` (two ``ConvModule`` per extra level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from detcore.models import BaseModule, ConvModule


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet, as in SSD).

    ``y[:, c] = weight[c] * x[:, c] / (||x||_2 over channels + eps)``, computed in float32 and cast
    back to the input dtype. ``weight`` starts at ``scale`` (20 in SSD).
    """

    def __init__(self, n_dims: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.scale = float(scale)
        self.eps = eps
        self.weight = nn.Parameter(torch.full((n_dims,), self.scale))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(self.scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.size(1) != self.n_dims:
            raise ValueError(f"L2Norm: expected (B, {self.n_dims}, H, W), got shape {tuple(x.shape)}")
        xf = x.float()
        norm = xf.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return (self.weight.float()[None, :, None, None] * xf / norm).type_as(x)

    def extra_repr(self) -> str:
        return f"{self.n_dims}, scale={self.scale}, eps={self.eps}"


def _default_init_cfg() -> list[dict[str, Any]]:
    return [
        {"type": "Xavier", "distribution": "uniform", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": "BatchNorm2d"},
    ]


class SSDNeck(BaseModule):
    """Extra SSD levels on top of the backbone's maps.

    Args:
        in_channels: channels of the backbone maps (e.g. ``(512, 1024)``).
        out_channels: channels of every output map; starts with ``in_channels``, then one entry per
            extra level (e.g. ``(512, 1024, 512, 256, 256, 256)`` for SSD300).
        level_strides, level_paddings: stride and padding of each extra level's second conv
            (SSD300: ``(2, 2, 1, 1)`` / ``(1, 1, 0, 0)``; SSD512: ``(2, 2, 2, 2, 1)`` / ``(1, 1, 1, 1, 1)``).
        l2_norm_scale: initial scale of the L2 norm on the first map; ``None`` or 0: no L2 norm.
        last_kernel_size: kernel of the last extra level's second conv (SSD512: 4).
        use_depthwise: not supported (SSD-Lite); must be False.
        conv_cfg, norm_cfg, act_cfg: layer tables of the extra convs (default: conv with bias, ReLU).
        init_cfg: weight initialisation (default: Xavier uniform on convs, as the reference).

    Each extra level is ``ConvModule(c_prev, c // 2, 1)`` then ``ConvModule(c // 2, c, k, stride, padding)``
    applied to the previous output. Forward: tuple of ``len(in_channels)`` maps -> tuple of
    ``len(out_channels)`` maps (the first L2-normalised).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        level_strides: Sequence[int],
        level_paddings: Sequence[int],
        l2_norm_scale: float | None = 20.0,
        last_kernel_size: int = 3,
        use_depthwise: bool = False,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = {"type": "ReLU"},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg if init_cfg is not None else _default_init_cfg())
        in_channels, out_channels = tuple(in_channels), tuple(out_channels)
        if use_depthwise:
            raise NotImplementedError("SSDNeck: use_depthwise (SSD-Lite) is not supported by det-plugin-ssd")
        if len(out_channels) <= len(in_channels):
            raise ValueError(
                f"SSDNeck: out_channels {out_channels} must have more entries than in_channels {in_channels}"
            )
        if out_channels[: len(in_channels)] != in_channels:
            raise ValueError(
                f"SSDNeck: out_channels {out_channels} must start with in_channels {in_channels}"
            )
        num_extra = len(out_channels) - len(in_channels)
        if not len(level_strides) == len(level_paddings) == num_extra:
            raise ValueError(
                f"SSDNeck: {num_extra} extra levels need as many level_strides and level_paddings; got "
                f"{len(level_strides)} and {len(level_paddings)}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels

        if l2_norm_scale:
            self.l2_norm = L2Norm(in_channels[0], l2_norm_scale)

        cfgs = {
            "conv_cfg": dict(conv_cfg) if conv_cfg else None,
            "norm_cfg": dict(norm_cfg) if norm_cfg else None,
            "act_cfg": dict(act_cfg) if act_cfg else None,
        }
        self.extra_layers = nn.ModuleList()
        for i in range(num_extra):
            c_in = out_channels[len(in_channels) - 1 + i]
            c_out = out_channels[len(in_channels) + i]
            kernel = last_kernel_size if i == num_extra - 1 else 3
            self.extra_layers.append(
                nn.Sequential(
                    ConvModule(c_in, c_out // 2, 1, **cfgs),
                    ConvModule(
                        c_out // 2, c_out, kernel, stride=level_strides[i], padding=level_paddings[i], **cfgs
                    ),
                )
            )

    def init_weights(self) -> None:
        """``init_cfg`` on the convs, then the L2 norm's weight back to ``l2_norm_scale``."""
        first = not self.is_init
        super().init_weights()
        if first and hasattr(self, "l2_norm"):
            self.l2_norm.reset_parameters()

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"SSDNeck: expected {len(self.in_channels)} input maps, got {len(inputs)}")
        outs = list(inputs)
        if hasattr(self, "l2_norm"):
            outs[0] = self.l2_norm(outs[0])
        feat = outs[-1]
        for layer in self.extra_layers:
            feat = layer(feat)
            outs.append(feat)
        return tuple(outs)
