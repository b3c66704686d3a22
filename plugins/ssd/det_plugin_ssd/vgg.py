"""VGG backbone for SSD: the plain VGG convolutions plus pool5 (3x3, stride 1) and fc6/fc7 as convs.

Layout of ``features`` (an ``nn.Sequential``; its indices are the reference checkpoint's keys
``backbone.features.N.*``): per stage ``num_blocks x (conv3x3 [, BN], ReLU)`` then ``MaxPool2d(2, 2)``
(the last stage's pool dropped unless ``with_last_pool``), then ``MaxPool2d(3, 1, 1)``, fc6 as a
3x3 conv with dilation 6, ReLU, fc7 as a 1x1 conv, ReLU. For VGG16 the outputs at
``out_feature_indices = (22, 34)`` are conv4_3 after its ReLU (stride 8) and fc7 after its ReLU
(stride 16 with ``ceil_mode``: 300 -> 38 and 19).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from detcore.models import BaseModule

#: conv blocks per stage of each VGG depth
STAGE_BLOCKS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}


def _default_init_cfg() -> list[dict[str, Any]]:
    """The reference's VGG init without a pretrained checkpoint."""
    return [
        {"type": "Kaiming", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": "BatchNorm2d"},
        {"type": "Normal", "std": 0.01, "layer": "Linear"},
    ]


class SSDVGG(BaseModule):
    """VGG-{11,13,16,19} with SSD's pool5/fc6/fc7 convolutions.

    Args:
        depth: 11, 13, 16 or 19.
        with_last_pool: keep the 2x2 max-pool after the fifth stage (SSD: False).
        ceil_mode: round the 2x2 pools' output size up (SSD: True, so 75 -> 38).
        out_indices: accepted for config compatibility with the reference (which stages the plain
            VGG would return); the outputs are chosen by ``out_feature_indices``.
        out_feature_indices: indices in ``features`` whose outputs are returned, in order.
        base_channels: channels of the first stage; stage ``i`` has ``base * 2**i`` (at most
            ``8 * base``) and fc6/fc7 have ``16 * base``. 64 is VGG; smaller values give a slim
            network for tests (a detcore addition; the reference has no such option).
        with_bn: a BatchNorm after every stage conv (not used by SSD).
        pretrained: a checkpoint path/URL, shorthand for ``init_cfg = {type = "Pretrained", ...}``.
        init_cfg: weight initialisation (default: Kaiming on convs, as the reference).
        input_size, l2_norm_scale: deprecated in the reference 2.x (the L2 norm moved to
            ``SSDNeck``); accepted and ignored so old configs still validate.

    Forward: images ``(B, 3, H, W)`` -> tuple of the feature maps at ``out_feature_indices``
    (VGG16 at 300: ``(B, 512, 38, 38)`` and ``(B, 1024, 19, 19)``).
    """

    def __init__(
        self,
        depth: int = 16,
        with_last_pool: bool = False,
        ceil_mode: bool = True,
        out_indices: Sequence[int] = (3, 4),
        out_feature_indices: Sequence[int] = (22, 34),
        base_channels: int = 64,
        with_bn: bool = False,
        pretrained: str | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        input_size: int | None = None,
        l2_norm_scale: float | None = None,
    ) -> None:
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"SSDVGG: depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
        if pretrained is not None and init_cfg is not None:
            raise ValueError("SSDVGG: give either pretrained or init_cfg, not both")
        if pretrained is not None:
            init_cfg = {"type": "Pretrained", "checkpoint": pretrained}
        super().__init__(init_cfg if init_cfg is not None else _default_init_cfg())
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.stage_blocks = STAGE_BLOCKS[depth]

        layers: list[nn.Module] = []
        in_ch = 3
        for i, num_blocks in enumerate(self.stage_blocks):
            out_ch = base_channels * 2 ** min(i, 3)
            for _ in range(num_blocks):
                layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
                if with_bn:
                    layers.append(nn.BatchNorm2d(out_ch))
                layers.append(nn.ReLU(inplace=True))
                in_ch = out_ch
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
        if not with_last_pool:
            layers.pop()
        fc_ch = base_channels * 16
        layers += [
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(in_ch, fc_ch, kernel_size=3, padding=6, dilation=6),
            nn.ReLU(inplace=True),
            nn.Conv2d(fc_ch, fc_ch, kernel_size=1),
            nn.ReLU(inplace=True),
        ]
        self.features = nn.Sequential(*layers)

        self.out_feature_indices = tuple(out_feature_indices)
        bad = [i for i in self.out_feature_indices if not 0 <= i < len(self.features)]
        if bad:
            raise ValueError(
                f"SSDVGG: out_feature_indices {bad} are outside features[0..{len(self.features) - 1}]"
            )
        self.out_channels = tuple(self._channels_at(i) for i in self.out_feature_indices)

    def _channels_at(self, index: int) -> int:
        """Channels of the output of ``features[index]`` (the last conv at or before it)."""
        for layer in reversed(list(self.features)[: index + 1]):
            if isinstance(layer, nn.Conv2d):
                return layer.out_channels
        return 3

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError(f"SSDVGG: expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.out_feature_indices:
                outs.append(x)
        return tuple(outs)
