"""``FusedSemanticHead``: a semantic segmentation branch on all FPN levels fused at one level (HTC; SCNet's
semantic head extends it).

Numerics of the reference 2.x: every level goes through its own 1x1 lateral ConvModule; the other levels
are first resized (bilinear, ``align_corners=True``) to the fusion level's size, and the laterals are
summed; ``num_convs`` 3x3 ConvModules follow; ``conv_logits`` (1x1) gives the class logits and
``conv_embedding`` (a 1x1 ConvModule) the semantic features that the RoI heads pool. The loss is a
softmax cross entropy against a label map at the fusion level's resolution, pixels labelled
``ignore_label`` ignored (the mean runs over all pixels, as the reference's ``CrossEntropyLoss`` without
``avg_non_ignore``). Module names follow the reference checkpoints: ``lateral_convs.N.conv``,
``convs.N.conv``, ``conv_embedding.conv``, ``conv_logits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.init import BaseModule, ModuleList
from detcore.models.layers.conv_module import ConvModule
from detcore.registry import build


class FusedSemanticHead(BaseModule):
    """Semantic logits and features at level ``fusion_level`` of ``num_ins`` feature maps.

    Args:
        num_ins: number of input levels (5 for FPN P2-P6).
        fusion_level: the level whose size the output has (1: stride 8).
        num_convs: 3x3 ConvModules after the fusion.
        in_channels, conv_out_channels: channels of the inputs and of the convs / the semantic features.
        num_classes: semantic classes (183 for COCO-stuff: 0 ... 182).
        conv_cfg, norm_cfg: layer tables of the ConvModules.
        ignore_label, loss_weight: override ``loss_seg``'s ``ignore_index`` / ``loss_weight`` when given.
        loss_seg: the loss table (``CrossEntropyLoss``, ``ignore_index`` 255, ``loss_weight`` 0.2).
        init_cfg: weight init (Kaiming of ``conv_logits``; the ConvModules initialise themselves).

    Input: ``num_ins`` maps ``(B, in_channels, H_l, W_l)``. Output: ``(logits (B, num_classes, H_f,
    W_f), semantic_feat (B, conv_out_channels, H_f, W_f))`` at the fusion level's size ``(H_f, W_f)``.
    """

    def __init__(
        self,
        num_ins: int,
        fusion_level: int,
        num_convs: int = 4,
        in_channels: int = 256,
        conv_out_channels: int = 256,
        num_classes: int = 183,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        ignore_label: int | None = None,
        loss_weight: float | None = None,
        loss_seg: Mapping[str, Any] = {"type": "CrossEntropyLoss", "ignore_index": 255, "loss_weight": 0.2},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - copied
            "type": "Kaiming",
            "override": {"name": "conv_logits"},
        },
    ) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if not 0 <= fusion_level < num_ins:
            raise ValueError(f"{name}: fusion_level {fusion_level} is not one of the {num_ins} input levels")
        self.num_ins = num_ins
        self.fusion_level = fusion_level
        self.num_convs = num_convs
        self.in_channels = in_channels
        self.conv_out_channels = conv_out_channels
        self.num_classes = num_classes
        conv = dict(conv_cfg) if conv_cfg is not None else None
        norm = dict(norm_cfg) if norm_cfg is not None else None
        self.lateral_convs = ModuleList(
            [
                ConvModule(in_channels, in_channels, 1, conv_cfg=conv, norm_cfg=norm, inplace=False)
                for _ in range(num_ins)
            ]
        )
        self.convs = ModuleList(
            [
                ConvModule(
                    in_channels if i == 0 else conv_out_channels,
                    conv_out_channels,
                    3,
                    padding=1,
                    conv_cfg=conv,
                    norm_cfg=norm,
                )
                for i in range(num_convs)
            ]
        )
        self.conv_embedding = ConvModule(
            conv_out_channels, conv_out_channels, 1, conv_cfg=conv, norm_cfg=norm
        )
        self.conv_logits = nn.Conv2d(conv_out_channels, num_classes, 1)
        loss_seg = dict(loss_seg)
        if ignore_label is not None:
            loss_seg["ignore_index"] = ignore_label
        if loss_weight is not None:
            loss_seg["loss_weight"] = loss_weight
        self.ignore_label = loss_seg.get("ignore_index")
        self.criterion = build("loss", loss_seg, where=f"{name}.loss_seg")

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_ins`` levels ``(B, C, H_l, W_l)`` -> ``(logits (B, K, H_f, W_f), feat (B, C', H_f,
        W_f))``."""
        name = type(self).__name__
        if len(feats) != self.num_ins:
            raise ValueError(f"{name}: expected {self.num_ins} feature levels, got {len(feats)}")
        for i, f in enumerate(feats):
            if f.dim() != 4 or f.shape[1] != self.in_channels:
                raise ValueError(
                    f"{name}: level {i} must be (B, {self.in_channels}, H, W), got {tuple(f.shape)}"
                )
        x = self.lateral_convs[self.fusion_level](feats[self.fusion_level])
        size = tuple(x.shape[-2:])
        for i, feat in enumerate(feats):
            if i != self.fusion_level:
                feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=True)
                x = x + self.lateral_convs[i](feat)
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(x), self.conv_embedding(x)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross entropy of ``logits`` ``(B, K, H, W)`` against ``labels`` ``(B, 1, H, W)`` or ``(B, H, W)``
        (class ids; ``ignore_label`` pixels ignored), times the loss weight."""
        name = type(self).__name__
        if labels.dim() == 4:
            if labels.shape[1] != 1:
                raise ValueError(f"{name}: gt_semantic_seg must be (B, 1, H, W), got {tuple(labels.shape)}")
            labels = labels.squeeze(1)
        if labels.shape != (logits.shape[0], *logits.shape[-2:]):
            raise ValueError(
                f"{name}: gt_semantic_seg of size {tuple(labels.shape)} does not match the semantic logits "
                f"{tuple(logits.shape)} (batch, H, W); the maps must be at the fusion level's scale (e.g. "
                "SegRescale with scale_factor 0.125 after Pad with size_divisor 32)"
            )
        return self.criterion(logits, labels.long())


__all__ = ["FusedSemanticHead"]
