"""Residual blocks: the two-conv basic block (ResNet-18/34) and the 1x1-3x3-1x1 bottleneck (ResNet-50+,
ResNeXt with ``groups`` > 1).

Attribute names follow the reference checkpoints: ``conv1``, ``bn1``, ``conv2``, ``bn2`` (``conv3``,
``bn3``), ``downsample``. The norm attributes are named by the norm type (``bn1`` for batch norm,
``gn1`` for group norm), as ``build_norm_layer`` names them. Plugin blocks of a bottleneck (``plugins``)
follow, named by their type (``context_block``, ``gen_attention_block``, ``nonlocal_block``, plus a
``postfix``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch.utils.checkpoint as cp
from torch import Tensor, nn

from detcore.models.layers import build_conv_layer, build_norm_layer, build_plugin_layer

DEFAULT_NORM_CFG: Mapping[str, Any] = {"type": "BN", "requires_grad": True}

#: where the stride of a bottleneck goes: "pytorch" on the 3x3 conv, "caffe" on the first 1x1 conv
STYLES = ("pytorch", "caffe")

#: where a plugin block can go inside a bottleneck
PLUGIN_POSITIONS = ("after_conv1", "after_conv2", "after_conv3")


def _run(fn: Callable[[Tensor], Tensor], x: Tensor, with_cp: bool) -> Tensor:
    """Apply ``fn``, through activation checkpointing when asked and gradients flow."""
    if with_cp and x.requires_grad:
        return cp.checkpoint(fn, x, use_reentrant=False)
    return fn(x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or ``downsample``) shortcut; output channels = ``planes``.

    Input (B, inplanes, H, W) -> (B, planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        style: str = "pytorch",
        with_cp: bool = False,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = DEFAULT_NORM_CFG,
        dcn: Optional[Mapping[str, Any]] = None,
        plugins: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> None:
        super().__init__()
        if plugins:
            raise ValueError(
                "BasicBlock (ResNet-18/34): 'plugins' (context / attention blocks) are only supported "
                "in Bottleneck blocks (depth >= 50), as in the reference"
            )
        if dcn is not None:
            raise ValueError(
                "BasicBlock (ResNet-18/34): deformable convolution ('dcn') is only supported "
                "in Bottleneck blocks (depth >= 50)"
            )
        if style not in STYLES:
            raise ValueError(f"BasicBlock: style must be one of {STYLES}, got {style!r}")
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.conv1 = build_conv_layer(
            conv_cfg, inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, padding=1, bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation
        self.with_cp = with_cp

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def last_norm(self) -> nn.Module:
        """The norm whose weight ``zero_init_residual`` sets to 0."""
        return self.norm2

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(_run(self._residual, x, self.with_cp))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, deformable with ``dcn``), 1x1 expand; output = 4 * planes.

    ``style="pytorch"`` puts the stride on the 3x3 conv, ``"caffe"`` on the first 1x1 conv. The inner
    width is ``planes`` when ``groups == 1`` and ``floor(planes * base_width / base_channels) * groups``
    otherwise (ResNeXt-101 32x4d: 128 in the first stage). ``dcn`` is a conv table such as
    ``{"type": "DCN", "deform_groups": 1}``; with ``fallback_on_stride = true`` in it, a block whose 3x3
    conv is strided keeps a plain conv. ``plugins`` are ``{cfg = {type = ...}, position = ...}`` tables:
    each block is built with the channels at its position (``width`` after conv1 / conv2, ``4 * planes``
    after conv3) and applied there, in list order; after conv3 it acts before the shortcut is added.

    Input (B, inplanes, H, W) -> (B, 4 * planes, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: Optional[nn.Module] = None,
        style: str = "pytorch",
        with_cp: bool = False,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = DEFAULT_NORM_CFG,
        dcn: Optional[Mapping[str, Any]] = None,
        groups: int = 1,
        base_width: int = 4,
        base_channels: int = 64,
        plugins: Optional[Sequence[Mapping[str, Any]]] = None,
    ) -> None:
        super().__init__()
        if style not in STYLES:
            raise ValueError(f"Bottleneck: style must be one of {STYLES}, got {style!r}")
        if groups < 1:
            raise ValueError(f"Bottleneck: groups must be >= 1, got {groups}")
        width = planes if groups == 1 else (planes * base_width // base_channels) * groups
        if width == 0:
            raise ValueError(
                f"Bottleneck: inner width is 0 (planes={planes}, base_width={base_width}, "
                f"base_channels={base_channels}, groups={groups})"
            )
        conv1_stride, conv2_stride = (1, stride) if style == "pytorch" else (stride, 1)

        dcn_cfg = dict(dcn) if dcn is not None else None
        fallback_on_stride = bool(dcn_cfg.pop("fallback_on_stride", False)) if dcn_cfg is not None else False
        use_dcn = dcn_cfg is not None and not (fallback_on_stride and conv2_stride > 1)
        if use_dcn and conv_cfg is not None:
            raise ValueError("Bottleneck: 'conv_cfg' and 'dcn' cannot both be set (the 3x3 conv is the DCN)")

        self.norm1_name, norm1 = build_norm_layer(norm_cfg, width, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, width, postfix=2)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, planes * self.expansion, postfix=3)

        self.conv1 = build_conv_layer(conv_cfg, inplanes, width, 1, stride=conv1_stride, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(
            dcn_cfg if use_dcn else conv_cfg,
            width,
            width,
            3,
            stride=conv2_stride,
            padding=dilation,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.add_module(self.norm2_name, norm2)
        self.conv3 = build_conv_layer(conv_cfg, width, planes * self.expansion, 1, bias=False)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

        self.inplanes, self.planes, self.width = inplanes, planes, width
        self.stride, self.dilation, self.style = stride, dilation, style
        self.conv1_stride, self.conv2_stride = conv1_stride, conv2_stride
        self.with_dcn = use_dcn
        self.with_cp = with_cp

        # plugin blocks last, so their keys follow the block's own (the reference's order)
        by_position = _plugins_by_position(plugins)
        channels = {"after_conv1": width, "after_conv2": width, "after_conv3": planes * self.expansion}
        self.plugin_names: dict[str, list[str]] = {
            position: self._make_plugins(cfgs, channels[position]) for position, cfgs in by_position.items()
        }

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    @property
    def with_plugins(self) -> bool:
        return any(self.plugin_names.values())

    def _make_plugins(self, cfgs: Sequence[Mapping[str, Any]], in_channels: int) -> list[str]:
        names = []
        for cfg in cfgs:
            name, layer = build_plugin_layer(cfg, in_channels=in_channels)
            if hasattr(self, name):
                raise ValueError(
                    f"Bottleneck: two plugin blocks named '{name}'; give one a 'postfix' in its cfg table"
                )
            self.add_module(name, layer)
            names.append(name)
        return names

    def _plugins(self, x: Tensor, position: str) -> Tensor:
        for name in self.plugin_names[position]:
            x = getattr(self, name)(x)
        return x

    @property
    def last_norm(self) -> nn.Module:
        """The norm whose weight ``zero_init_residual`` sets to 0."""
        return self.norm3

    def _residual(self, x: Tensor) -> Tensor:
        out = self._plugins(self.relu(self.norm1(self.conv1(x))), "after_conv1")
        out = self._plugins(self.relu(self.norm2(self.conv2(out))), "after_conv2")
        out = self._plugins(self.norm3(self.conv3(out)), "after_conv3")
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(_run(self._residual, x, self.with_cp))


def _plugins_by_position(
    plugins: Optional[Sequence[Mapping[str, Any]]],
) -> dict[str, list[Mapping[str, Any]]]:
    """Group a block's plugin tables (``{cfg, position}``; ``stages`` already applied) by position."""
    grouped: dict[str, list[Mapping[str, Any]]] = {position: [] for position in PLUGIN_POSITIONS}
    for i, plugin in enumerate(plugins or ()):
        if not isinstance(plugin, Mapping) or "cfg" not in plugin or "position" not in plugin:
            raise ValueError(
                f"Bottleneck: plugins[{i}] must be a table with 'cfg' and 'position' keys, got {plugin!r}"
            )
        unknown = sorted(set(plugin) - {"cfg", "position", "stages"})
        if unknown:
            raise ValueError(f"Bottleneck: plugins[{i}]: unknown keys {unknown} (cfg, position, stages)")
        if plugin["position"] not in PLUGIN_POSITIONS:
            raise ValueError(
                f"Bottleneck: plugins[{i}].position must be one of {PLUGIN_POSITIONS}, "
                f"got {plugin['position']!r}"
            )
        grouped[plugin["position"]].append(plugin["cfg"])
    return grouped


__all__ = ["BasicBlock", "Bottleneck", "DEFAULT_NORM_CFG", "PLUGIN_POSITIONS", "STYLES"]
