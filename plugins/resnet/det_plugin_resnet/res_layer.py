"""One ResNet stage: a sequence of residual blocks, the first of which changes resolution and width."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import nn

from detcore.models.layers import build_conv_layer, build_norm_layer


def make_downsample(
    inplanes: int,
    outplanes: int,
    stride: int,
    avg_down: bool,
    conv_cfg: Optional[Mapping[str, Any]],
    norm_cfg: Mapping[str, Any],
) -> nn.Sequential:
    """The projection shortcut of a stage's first block.

    Plain: ``[1x1 conv (stride), norm]`` (keys ``downsample.0``, ``downsample.1``). With ``avg_down``
    (ResNet-D): ``[AvgPool(stride), 1x1 conv, norm]`` (keys ``downsample.1``, ``downsample.2``); the pool
    is there even for stride 1, where it is the identity, so that every stage has the same key layout.
    """
    layers: list[nn.Module] = []
    conv_stride = stride
    if avg_down:
        conv_stride = 1
        layers.append(
            nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)
        )
    layers.append(build_conv_layer(conv_cfg, inplanes, outplanes, 1, stride=conv_stride, bias=False))
    layers.append(build_norm_layer(norm_cfg, outplanes)[1])
    return nn.Sequential(*layers)


class ResLayer(nn.Sequential):
    """``num_blocks`` blocks of class ``block``; the first has ``stride`` and, when the resolution or the
    width changes, a projection shortcut. Children are named ``0``, ``1``, ... as in the checkpoints.

    Input (B, inplanes, H, W) -> (B, planes * block.expansion, ceil(H / stride), ceil(W / stride)).
    ``block_kwargs`` (style, dilation, conv_cfg, norm_cfg, dcn, with_cp, groups, ...) go to every block.
    """

    def __init__(
        self,
        block: type,
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int = 1,
        avg_down: bool = False,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = {"type": "BN", "requires_grad": True},  # noqa: B006 - read only
        **block_kwargs: Any,
    ) -> None:
        if num_blocks < 1:
            raise ValueError(f"ResLayer: num_blocks must be >= 1, got {num_blocks}")
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            downsample = make_downsample(inplanes, outplanes, stride, avg_down, conv_cfg, norm_cfg)
        blocks = [
            block(
                inplanes,
                planes,
                stride=stride,
                downsample=downsample,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                **block_kwargs,
            )
        ]
        for _ in range(1, num_blocks):
            blocks.append(
                block(outplanes, planes, stride=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, **block_kwargs)
            )
        super().__init__(*blocks)
        self.out_channels = outplanes
