"""``CTResNetNeck``: CenterNet's upsampling neck: (3x3 conv [DCNv2] + BN + ReLU, 2x deconv + BN + ReLU)
per stage on the backbone's last map, as the reference's ``CTResNetNeck`` (same keys and init)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.init import BaseModule
from detcore.models.layers import ConvModule


def fill_bilinear_deconv_(deconv: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """The reference's deconv init: ``reset_parameters``, then the bilinear kernel ``(1 - |i / f - c|)
    (1 - |j / f - c|)`` (``f = ceil(k / 2)``, ``c = (2f - 1 - f % 2) / 2f``) written into
    ``weight[ch, 0]`` for every input channel ``ch``; the other output channels keep the reset values.
    Returns ``deconv``."""
    deconv.reset_parameters()
    w = deconv.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for ch in range(1, w.size(0)):
        w[ch, 0, :, :] = w[0, 0, :, :]
    return deconv


class CTResNetNeck(BaseModule):
    """Upsample the backbone's last map by ``2 ** len(num_deconv_filters)``.

    Args:
        in_channel: channels of the last backbone map (512 for ResNet-18).
        num_deconv_filters: output channels of each stage (the reference: ``(256, 128, 64)``).
        num_deconv_kernels: the deconv kernel of each stage (``(4, 4, 4)``; stride 2, padding 1, so
            kernel 4 doubles the size exactly).
        use_dcn: the 3x3 convs are modulated deformable convs (``DCNv2``).
        init_cfg: unused by the default init (:meth:`init_weights`), kept for the config format.

    ``forward(feats)`` takes the backbone's maps ``[(B, C_l, h_l, w_l)]``, uses the last and returns a
    one-element tuple ``((B, num_deconv_filters[-1], h * 2^n, w * 2^n),)``. The state-dict keys are
    ``deconv_layers.{2i}.conv/bn`` (the 3x3 conv) and ``deconv_layers.{2i+1}.conv/bn`` (the deconv).
    """

    def __init__(
        self,
        in_channel: int,
        num_deconv_filters: Sequence[int] = (256, 128, 64),
        num_deconv_kernels: Sequence[int] = (4, 4, 4),
        use_dcn: bool = True,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if len(num_deconv_filters) != len(num_deconv_kernels):
            raise ValueError(
                f"CTResNetNeck: {len(num_deconv_filters)} num_deconv_filters but "
                f"{len(num_deconv_kernels)} num_deconv_kernels"
            )
        self.use_dcn = use_dcn
        self.in_channel = in_channel
        layers: list[nn.Module] = []
        channels = in_channel
        for feat, kernel in zip(num_deconv_filters, num_deconv_kernels):
            conv_cfg = {"type": "DCNv2"} if use_dcn else None
            layers.append(ConvModule(channels, feat, 3, padding=1, conv_cfg=conv_cfg,
                                     norm_cfg={"type": "BN"}))
            layers.append(ConvModule(feat, feat, kernel, stride=2, padding=1, conv_cfg={"type": "deconv"},
                                     norm_cfg={"type": "BN"}))
            channels = feat
        self.deconv_layers = nn.Sequential(*layers)

    def init_weights(self) -> None:
        """The reference's init: bilinear deconvs (:func:`fill_bilinear_deconv_`), BN weight 1 / bias 0,
        plain 3x3 convs reset to PyTorch's default (DCNv2 convs keep their own init)."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                fill_bilinear_deconv_(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif not self.use_dcn and isinstance(m, nn.Conv2d):
                m.reset_parameters()

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor]:
        if not isinstance(feats, (list, tuple)):
            raise TypeError(f"CTResNetNeck: expects a list or tuple of maps, got {type(feats).__name__}")
        return (self.deconv_layers(feats[-1]),)
