"""ResNeXt backbones (Xie et al., 2017): ResNet bottlenecks whose 3x3 conv is split into ``groups``."""

from __future__ import annotations

from typing import Any

from det_plugin_resnet.blocks import Bottleneck
from det_plugin_resnet.res_layer import ResLayer
from det_plugin_resnet.resnet import ResNet


class ResNeXt(ResNet):
    """ResNeXt-50/101/152 ``{groups}x{base_width}d``: e.g. ResNeXt-101 32x4d is ``depth=101, groups=32,
    base_width=4``. The inner width of stage ``i`` is ``groups * base_width * 2**i`` (128 ... 1024 for
    32x4d); outputs have 256, 512, 1024, 2048 channels like ResNet-50+.

    Takes every :class:`ResNet` argument besides ``groups`` and ``base_width``.
    """

    arch_settings = {d: v for d, v in ResNet.arch_settings.items() if v[0] is Bottleneck}

    def __init__(self, groups: int = 1, base_width: int = 4, **kwargs: Any) -> None:
        if groups < 1 or base_width < 1:
            raise ValueError(f"ResNeXt: groups and base_width must be >= 1, got {groups}, {base_width}")
        self.groups = groups
        self.base_width = base_width
        super().__init__(**kwargs)

    def make_res_layer(self, **kwargs: Any) -> ResLayer:
        return ResLayer(
            groups=self.groups, base_width=self.base_width, base_channels=self.base_channels, **kwargs
        )
