"""RoI shared heads: layers every RoI feature passes through before the bbox (and mask) heads.

``ResLayer`` is the C4 design of Faster R-CNN (He et al., 2016; Ren et al., 2015): the backbone stops
after res4 (stride 16), RoIs are pooled from res4 and res5 runs per RoI. Its state-dict keys are those of
the reference checkpoints: ``layer4.0.conv1.weight``, ... under ``roi_head.shared_head``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from det_plugin_resnet.res_layer import ResLayer as _StageLayer
from det_plugin_resnet.resnet import ARCH_SETTINGS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from detcore.models import BaseModule


def _default_init_cfg() -> list[dict[str, Any]]:
    return [
        {"type": "Kaiming", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": ["_BatchNorm", "GroupNorm"]},
    ]


class ResLayer(BaseModule):
    """One ResNet stage applied to RoI features: (N, C_in, S, S) -> (N, C_out, ceil(S / stride), ...).

    Stage ``stage`` (0-based) of a ResNet of ``depth``: ``planes = 64 * 2**stage``, input channels
    ``64 * 2**(stage - 1) * 4`` (1024 for stage 3), output ``planes * 4`` (2048). The stage is the
    attribute ``layer{stage + 1}`` (keys ``layer4.*`` for stage 3), as in the reference checkpoints.

    Args:
        depth: ResNet depth (50, 101, 152; blocks per stage from the ResNet table).
        stage: which stage (0-based; 3 = res5).
        stride, dilation, style: of the stage's first block (``"caffe"`` puts the stride on the 1x1 conv).
        norm_cfg: norm table; ``norm_eval`` keeps batch norms in eval mode while training.
        with_cp: activation checkpointing in every block.
        dcn: deformable conv table for the 3x3 convs (as ``ResNet.dcn``).
        init_cfg: default Kaiming convs / unit norms. To start from ImageNet weights, give
            ``{type = "Pretrained", checkpoint = <the backbone's checkpoint>}``: it is loaded
            non-strictly, so its ``layer4.*`` keys fill this stage.
    """

    def __init__(
        self,
        depth: int,
        stage: int = 3,
        stride: int = 2,
        dilation: int = 1,
        style: str = "pytorch",
        norm_cfg: Mapping[str, Any] = {"type": "BN", "requires_grad": True},  # noqa: B006 - read only
        norm_eval: bool = True,
        with_cp: bool = False,
        dcn: Optional[Mapping[str, Any]] = None,
        init_cfg: Optional[Any] = None,
    ) -> None:
        if depth not in ARCH_SETTINGS:
            raise KeyError(f"ResLayer: invalid depth {depth}; valid depths: {sorted(ARCH_SETTINGS)}")
        block, stage_blocks = ARCH_SETTINGS[depth]
        if not 1 <= stage < len(stage_blocks):
            raise ValueError(f"ResLayer: stage must be in [1, {len(stage_blocks) - 1}], got {stage}")
        super().__init__(_default_init_cfg() if init_cfg is None else init_cfg)
        self.stage = stage
        self.norm_eval = norm_eval
        planes = 64 * 2**stage
        inplanes = 64 * 2 ** (stage - 1) * block.expansion
        layer = _StageLayer(
            block,
            inplanes,
            planes,
            stage_blocks[stage],
            stride=stride,
            dilation=dilation,
            style=style,
            with_cp=with_cp,
            norm_cfg=dict(norm_cfg),
            dcn=dcn,
        )
        self.add_module(f"layer{stage + 1}", layer)
        self.in_channels = inplanes
        self.out_channels = layer.out_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResLayer: expected RoI features (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return getattr(self, f"layer{self.stage + 1}")(x)

    def train(self, mode: bool = True) -> ResLayer:
        """Set the mode; with ``norm_eval`` the batch norms stay in eval mode (frozen statistics)."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


__all__ = ["ResLayer"]
