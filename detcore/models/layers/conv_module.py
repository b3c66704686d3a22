"""ConvModule: a convolution with an optional normalisation and activation, in a chosen order."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from detcore.models.init import constant_init, kaiming_init
from detcore.models.layers._lookup import layer_factory
from detcore.models.layers.activation import build_activation_layer
from detcore.models.layers.conv import build_conv_layer
from detcore.models.layers.norm import build_norm_layer

_PADDING_LAYERS = {"zeros": nn.ZeroPad2d, "reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}


class ConvModule(nn.Module):
    """conv -> norm -> activation (order configurable), named as reference checkpoints expect.

    Submodules: ``conv``; the norm under its abbreviation (``bn``, ``gn``, ``ln``, ``in``; also
    reachable as the property ``norm``); ``activate``. ``bias="auto"`` gives the conv a bias iff there
    is no norm. ``padding_mode`` ``zeros``/``circular`` go to the conv; ``reflect``/``replicate`` use
    a separate ``padding_layer``. Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H', W')``.
    """

    _abbr_ = "conv_block"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool | str = "auto",
        conv_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        act_cfg: dict | None = {"type": "ReLU"},  # noqa: B006 - read only, as the reference's default
        inplace: bool = True,
        with_spectral_norm: bool = False,
        padding_mode: str = "zeros",
        order: tuple[str, str, str] = ("conv", "norm", "act"),
    ) -> None:
        super().__init__()
        if conv_cfg is not None and not isinstance(conv_cfg, dict):
            raise TypeError(f"ConvModule: conv_cfg must be a dict or None, got {conv_cfg!r}")
        if norm_cfg is not None and not isinstance(norm_cfg, dict):
            raise TypeError(f"ConvModule: norm_cfg must be a dict or None, got {norm_cfg!r}")
        if act_cfg is not None and not isinstance(act_cfg, dict):
            raise TypeError(f"ConvModule: act_cfg must be a dict or None, got {act_cfg!r}")
        order = tuple(order)
        if len(order) != 3 or set(order) != {"conv", "norm", "act"}:
            raise ValueError(
                f"ConvModule: order must be a permutation of ('conv', 'norm', 'act'), got {order}"
            )
        if padding_mode not in ("zeros", "circular", "reflect", "replicate"):
            raise ValueError(f"ConvModule: unknown padding_mode {padding_mode!r}")
        self.conv_cfg, self.norm_cfg, self.act_cfg = conv_cfg, norm_cfg, act_cfg
        self.inplace = inplace
        self.with_spectral_norm = with_spectral_norm
        self.order = order
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None
        if bias == "auto":
            bias = not self.with_norm
        elif not isinstance(bias, bool):
            raise ValueError(f"ConvModule: bias must be a bool or 'auto', got {bias!r}")
        self.with_bias = bias

        self.with_explicit_padding = padding_mode in ("reflect", "replicate")
        conv_kwargs: dict[str, Any] = {}
        if self.with_explicit_padding:
            self.padding_layer = _PADDING_LAYERS[padding_mode](padding)
            conv_padding: Any = 0
        else:
            conv_padding = padding
            if padding_mode == "circular":
                conv_kwargs["padding_mode"] = "circular"
        self.conv = build_conv_layer(
            conv_cfg,
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=conv_padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            **conv_kwargs,
        )
        # expose the conv's geometry as the reference does
        self.in_channels = self.conv.in_channels
        self.out_channels = self.conv.out_channels
        self.kernel_size = self.conv.kernel_size
        self.stride = self.conv.stride
        self.padding = padding
        self.dilation = self.conv.dilation
        self.transposed = getattr(self.conv, "transposed", False)
        self.output_padding = getattr(self.conv, "output_padding", 0)
        self.groups = self.conv.groups
        if with_spectral_norm:
            self.conv = nn.utils.spectral_norm(self.conv)

        self.norm_name: str | None = None
        if self.with_norm:
            norm_channels = out_channels if order.index("norm") > order.index("conv") else in_channels
            self.norm_name, norm = build_norm_layer(norm_cfg, norm_channels)
            self.add_module(self.norm_name, norm)
            if self.with_bias and isinstance(norm, (_BatchNorm, _InstanceNorm)):
                warnings.warn("ConvModule: a conv bias before batch/instance norm is redundant", stacklevel=2)

        if self.with_activation:
            act_cfg_ = dict(act_cfg)
            factory = layer_factory(act_cfg_["type"], "act_cfg")
            if _accepts(factory, "inplace"):
                act_cfg_.setdefault("inplace", inplace)
            self.activate = build_activation_layer(act_cfg_)

        self.init_weights()

    @property
    def norm(self) -> nn.Module | None:
        """The normalisation layer (``None`` without ``norm_cfg``)."""
        return getattr(self, self.norm_name) if self.norm_name else None

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) conv weights unless the conv has its own ``init_weights``; norm 1/0."""
        if not hasattr(self.conv, "init_weights"):
            if self.with_activation and self.act_cfg["type"] == "LeakyReLU":
                nonlinearity, a = "leaky_relu", self.act_cfg.get("negative_slope", 0.01)
            else:
                nonlinearity, a = "relu", 0
            kaiming_init(self.conv, a=a, nonlinearity=nonlinearity)
        if self.with_norm:
            constant_init(self.norm, 1, bias=0)

    def forward(self, x: torch.Tensor, activate: bool = True, norm: bool = True) -> torch.Tensor:
        for layer in self.order:
            if layer == "conv":
                if self.with_explicit_padding:
                    x = self.padding_layer(x)
                x = self.conv(x)
            elif layer == "norm" and norm and self.with_norm:
                x = self.norm(x)
            elif layer == "act" and activate and self.with_activation:
                x = self.activate(x)
        return x


def _accepts(factory: Any, name: str) -> bool:
    try:
        target = factory.__init__ if inspect.isclass(factory) else factory
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
