"""SSD's head: per level a 3x3 conv for softmax class logits and one for box deltas, trained with
hard negative mining.

Numerics follow the reference 2.x ``SSDHead``:

- ``num_classes + 1`` softmax outputs per anchor, background is the **last** index;
- targets from ``AnchorHead.get_targets`` (``MaxIoUAssigner``, ``PseudoSampler``, every anchor
  labelled: positive -> its class, negative -> ``num_classes``);
- per image: cross-entropy of every anchor times its label weight; all positives plus the
  ``neg_pos_ratio * num_pos`` negatives of highest loss (at most all negatives) are summed and
  divided by ``num_total_pos`` (positives of the whole batch, each image counting at least one);
- smooth L1 (``train_cfg.smoothl1_beta``) on the positives' encoded deltas, divided by the same;
- ``loss_cls`` and ``loss_bbox`` are lists with one entry per image (their sum is the batch loss).

State-dict keys: ``cls_convs.{level}.{i}`` and ``reg_convs.{level}.{i}`` (``nn.Sequential`` per
level; with ``stacked_convs = 0`` the single conv is ``.0``), as the reference checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models import ConvModule
from detcore.models.dense_heads import AnchorHead
from detcore.models.dense_heads.anchor_head import AnchorTargets
from detcore.models.losses import smooth_l1_loss
from detcore.models.utils import multi_apply
from detcore.settings import Key

_DEFAULT_ANCHORS: dict[str, Any] = {
    "type": "SSDAnchorGenerator",
    "scale_major": False,
    "input_size": 300,
    "basesize_ratio_range": (0.1, 0.9),
    "strides": [8, 16, 32, 64, 100, 300],
    "ratios": ([2], [2, 3], [2, 3], [2, 3], [2], [2]),
}
_DEFAULT_CODER: dict[str, Any] = {
    "type": "DeltaXYWHBBoxCoder",
    "clip_border": True,
    "target_means": [0.0, 0.0, 0.0, 0.0],
    "target_stds": [1.0, 1.0, 1.0, 1.0],
}


class SSDHead(AnchorHead):
    """SSD head (Liu et al., 2016).

    Args:
        num_classes: object classes, background excluded.
        in_channels: channels of each input level (SSD300: ``(512, 1024, 512, 256, 256, 256)``).
        stacked_convs: ``ConvModule`` layers before each level's output conv (SSD: 0).
        feat_channels: channels of those stacked convs.
        use_depthwise: SSD-Lite's depthwise-separable convs; not supported (must be False).
        conv_cfg, norm_cfg, act_cfg: layer tables of the stacked convs.
        anchor_generator: prior generator table (``SSDAnchorGenerator``); anchors per location may
            differ between levels.
        bbox_coder: box coder table (SSD: ``DeltaXYWHBBoxCoder`` with stds ``(0.1, 0.1, 0.2, 0.2)``).
        reg_decoded_bbox: apply the regression loss to decoded boxes (IoU-type losses).
        train_cfg: ``assigner``, ``neg_pos_ratio`` (3), ``smoothl1_beta`` (1.0), ``allowed_border``
            (-1), ``pos_weight`` (-1); a ``sampler`` is ignored (SSD mines negatives itself).
        test_cfg: ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img`` (``min_bbox_size`` is accepted and,
            as in the reference, unused).
        init_cfg: weight init (default: Xavier uniform on convs, zero bias).

    Forward: ``feats`` (one ``(B, in_channels[l], h_l, w_l)`` per level) -> ``(cls_scores, bbox_preds)``,
    lists over levels of ``(B, A_l * (num_classes + 1), h_l, w_l)`` and ``(B, A_l * 4, h_l, w_l)``.
    """

    #: AnchorHead's keys plus those of the hard negative mining in ``loss_by_feat_single``
    train_settings = AnchorHead.train_settings.extend(
        neg_pos_ratio=Key(int, 3, doc="negatives kept per positive (the hardest, by loss)"),
        smoothl1_beta=Key(float, 1.0, doc="beta of the smooth L1 box loss"),
    )

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: Sequence[int] = (512, 1024, 512, 256, 256, 256),
        stacked_convs: int = 0,
        feat_channels: int = 256,
        use_depthwise: bool = False,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        act_cfg: Mapping[str, Any] | None = None,
        anchor_generator: Mapping[str, Any] = _DEFAULT_ANCHORS,
        bbox_coder: Mapping[str, Any] = _DEFAULT_CODER,
        reg_decoded_bbox: bool = False,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Xavier", "layer": "Conv2d", "distribution": "uniform", "bias": 0,
        },
    ) -> None:
        if use_depthwise:
            raise NotImplementedError("SSDHead: use_depthwise (SSD-Lite) is not supported by det-plugin-ssd")
        self.stacked_convs = int(stacked_convs)
        self.conv_cfg = dict(conv_cfg) if conv_cfg else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg else None
        self.act_cfg = dict(act_cfg) if act_cfg else None
        # no loss modules: softmax scores (background last), losses computed in loss_by_feat_single
        super().__init__(
            num_classes, tuple(in_channels), feat_channels=feat_channels, anchor_generator=anchor_generator,
            bbox_coder=bbox_coder, reg_decoded_bbox=reg_decoded_bbox, loss_cls=None, loss_bbox=None,
            train_cfg=train_cfg, test_cfg=test_cfg, init_cfg=init_cfg,
        )

    def _handles_imbalance(self) -> bool:
        return True  # hard negative mining: a configured sampler is ignored

    @property
    def num_anchors(self) -> list[int]:
        """Anchors per location of each level."""
        return self.num_base_priors_per_level

    def _init_layers(self) -> None:
        if len(self.num_base_priors_per_level) != len(self.in_channels):
            raise ValueError(
                f"SSDHead: {len(self.in_channels)} in_channels but the anchor generator has "
                f"{len(self.num_base_priors_per_level)} levels"
            )
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, num_priors in zip(self.in_channels, self.num_base_priors_per_level):
            cls_layers: list[nn.Module] = []
            reg_layers: list[nn.Module] = []
            c = channels
            for _ in range(self.stacked_convs):
                for layers in (cls_layers, reg_layers):
                    layers.append(ConvModule(c, self.feat_channels, 3, padding=1, conv_cfg=self.conv_cfg,
                                             norm_cfg=self.norm_cfg, act_cfg=self.act_cfg))
                c = self.feat_channels
            cls_layers.append(nn.Conv2d(c, num_priors * self.cls_out_channels, kernel_size=3, padding=1))
            reg_layers.append(nn.Conv2d(c, num_priors * 4, kernel_size=3, padding=1))
            self.cls_convs.append(nn.Sequential(*cls_layers))
            self.reg_convs.append(nn.Sequential(*reg_layers))

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(feats) != len(self.cls_convs):
            raise ValueError(f"SSDHead: expected {len(self.cls_convs)} feature levels, got {len(feats)}")
        cls_scores = [conv(x) for x, conv in zip(feats, self.cls_convs)]
        bbox_preds = [conv(x) for x, conv in zip(feats, self.reg_convs)]
        return cls_scores, bbox_preds

    # -- losses -----------------------------------------------------------------------------------

    def loss_by_feat_single(  # type: ignore[override]
        self,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        anchor: torch.Tensor,
        labels: torch.Tensor,
        label_weights: torch.Tensor,
        bbox_targets: torch.Tensor,
        bbox_weights: torch.Tensor,
        avg_factor: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses of one image over all its anchors ``N`` (levels concatenated).

        ``cls_score`` ``(N, num_classes + 1)``, ``bbox_pred`` ``(N, 4)``, ``anchor`` ``(N, 4)``, ``labels``
        / ``label_weights`` ``(N,)``, ``bbox_targets`` / ``bbox_weights`` ``(N, 4)``. Returns
        ``(loss_cls (1,), loss_bbox ())``, both divided by ``avg_factor``.
        """
        loss_cls_all = F.cross_entropy(cls_score, labels, reduction="none") * label_weights
        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero(as_tuple=False).reshape(-1)
        neg_inds = (labels == self.num_classes).nonzero(as_tuple=False).view(-1)
        num_neg = min(int(self.train_cfg.get("neg_pos_ratio", 3)) * pos_inds.numel(), neg_inds.numel())
        topk_loss_cls_neg, _ = loss_cls_all[neg_inds].topk(num_neg)
        loss_cls = (loss_cls_all[pos_inds].sum() + topk_loss_cls_neg.sum()) / avg_factor
        if self.reg_decoded_bbox:
            bbox_pred = self.bbox_coder.decode(anchor, bbox_pred)
        loss_bbox = smooth_l1_loss(
            bbox_pred, bbox_targets, bbox_weights, beta=float(self.train_cfg.get("smoothl1_beta", 1.0)),
            avg_factor=avg_factor,
        )
        return loss_cls[None], loss_bbox

    def loss_from_targets(
        self, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor], targets: AnchorTargets
    ) -> dict[str, list[torch.Tensor]]:
        """``{"loss_cls": [per image (1,)], "loss_bbox": [per image ()]}``: the levels of each image
        concatenated, then :meth:`loss_by_feat_single` per image."""
        t = targets
        num_images = cls_scores[0].size(0)
        all_cls_scores = torch.cat(
            [s.permute(0, 2, 3, 1).reshape(num_images, -1, self.cls_out_channels) for s in cls_scores], 1
        )
        if not torch.isfinite(all_cls_scores).all():
            raise FloatingPointError("SSDHead: classification scores are infinite or NaN")
        all_labels = torch.cat(t.labels_list, -1).view(num_images, -1)
        all_label_weights = torch.cat(t.label_weights_list, -1).view(num_images, -1)
        all_bbox_preds = torch.cat([b.permute(0, 2, 3, 1).reshape(num_images, -1, 4) for b in bbox_preds], -2)
        all_bbox_targets = torch.cat(t.bbox_targets_list, -2).view(num_images, -1, 4)
        all_bbox_weights = torch.cat(t.bbox_weights_list, -2).view(num_images, -1, 4)
        all_anchors = [torch.cat(anchors) for anchors in t.anchor_list]

        losses_cls, losses_bbox = multi_apply(
            self.loss_by_feat_single, all_cls_scores, all_bbox_preds, all_anchors, all_labels,
            all_label_weights, all_bbox_targets, all_bbox_weights, avg_factor=t.avg_factor,
        )
        return {"loss_cls": losses_cls, "loss_bbox": losses_bbox}
