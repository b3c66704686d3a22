"""Activation layers named by ``act_cfg`` tables."""

from __future__ import annotations

import torch
from torch import nn

from detcore.models.layers._lookup import check_cfg, layer_factory


class HSigmoid(nn.Module):
    """Hard sigmoid: ``clamp((x + bias) / divisor, min_value, max_value)``."""

    def __init__(
        self, bias: float = 3.0, divisor: float = 6.0, min_value: float = 0.0, max_value: float = 1.0
    ) -> None:
        super().__init__()
        if divisor == 0:
            raise ValueError("HSigmoid: divisor must not be 0")
        self.bias, self.divisor, self.min_value, self.max_value = bias, divisor, min_value, max_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + self.bias) / self.divisor).clamp(self.min_value, self.max_value)


class Swish(nn.Module):
    """``x * sigmoid(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Clamp(nn.Module):
    """Clamp values to ``[min, max]``."""

    def __init__(self, min: float = -1.0, max: float = 1.0) -> None:  # noqa: A002
        super().__init__()
        self.min, self.max = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.min, max=self.max)


def build_activation_layer(cfg: dict) -> nn.Module:
    """Build an activation from an ``act_cfg`` table (``ReLU``, ``LeakyReLU``, ``PReLU``, ``ReLU6``,
    ``ELU``, ``Sigmoid``, ``Tanh``, ``GELU``, ``SiLU``, ``Swish``, ``HSigmoid``, ``HSwish``, ``Clamp``);
    the other keys go to the layer."""
    cfg = check_cfg(cfg, "act_cfg")
    return layer_factory(cfg.pop("type"), "act_cfg")(**cfg)
