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
from detcore.models.dense_heads.base_dense_head import BaseDenseHead, unpack_gt_instances
from detcore.models.losses import smooth_l1_loss
from detcore.models.utils import multi_apply
from detcore.registry import build
from detcore.structures.instances import Instances

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
        # AnchorHead.__init__ assumes one anchor count for every level and builds loss modules SSD
        # does not use: set up the shared attributes here instead.
        BaseDenseHead.__init__(self, init_cfg)
        if int(num_classes) <= 0:
            raise ValueError(f"SSDHead: num_classes must be > 0, got {num_classes}")
        if use_depthwise:
            raise NotImplementedError("SSDHead: use_depthwise (SSD-Lite) is not supported by det-plugin-ssd")
        self.num_classes = int(num_classes)
        self.in_channels = tuple(in_channels)
        self.stacked_convs = int(stacked_convs)
        self.feat_channels = feat_channels
        self.conv_cfg = dict(conv_cfg) if conv_cfg else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg else None
        self.act_cfg = dict(act_cfg) if act_cfg else None
        self.use_sigmoid_cls = False
        self.cls_out_channels = self.num_classes + 1  # softmax with the background last
        self.reg_decoded_bbox = reg_decoded_bbox
        self.prior_generator = build("task_util", dict(anchor_generator), where="SSDHead.anchor_generator")
        self.num_base_priors = list(self.prior_generator.num_base_priors)
        if len(self.num_base_priors) != len(self.in_channels):
            raise ValueError(
                f"SSDHead: {len(self.in_channels)} in_channels but the anchor generator has "
                f"{len(self.num_base_priors)} levels"
            )
        self.bbox_coder = build("task_util", dict(bbox_coder), where="SSDHead.bbox_coder")
        self.train_cfg = dict(train_cfg) if train_cfg is not None else None
        self.test_cfg = dict(test_cfg) if test_cfg is not None else None
        self.sampling = False
        if self.train_cfg:
            if "assigner" not in self.train_cfg:
                raise ValueError("SSDHead: train_cfg needs an 'assigner' table")
            self.assigner = build(
                "task_util", dict(self.train_cfg["assigner"]), where="SSDHead.train_cfg.assigner"
            )
            self.sampler = build("task_util", {"type": "PseudoSampler"}, where="SSDHead.sampler")
        self._init_layers()

    @property
    def num_anchors(self) -> list[int]:
        """Anchors per location of each level."""
        return self.num_base_priors

    def _init_layers(self) -> None:
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, num_priors in zip(self.in_channels, self.num_base_priors):
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

    def loss_single(  # type: ignore[override]
        self,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        anchor: torch.Tensor,
        labels: torch.Tensor,
        label_weights: torch.Tensor,
        bbox_targets: torch.Tensor,
        bbox_weights: torch.Tensor,
        num_total_samples: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses of one image over all its anchors ``N`` (levels concatenated).

        ``cls_score`` ``(N, num_classes + 1)``, ``bbox_pred`` ``(N, 4)``, ``anchor`` ``(N, 4)``, ``labels``
        / ``label_weights`` ``(N,)``, ``bbox_targets`` / ``bbox_weights`` ``(N, 4)``. Returns
        ``(loss_cls (1,), loss_bbox ())``, both divided by ``num_total_samples``.
        """
        loss_cls_all = F.cross_entropy(cls_score, labels, reduction="none") * label_weights
        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero(as_tuple=False).reshape(-1)
        neg_inds = (labels == self.num_classes).nonzero(as_tuple=False).view(-1)
        num_neg = min(int(self.train_cfg.get("neg_pos_ratio", 3)) * pos_inds.numel(), neg_inds.numel())
        topk_loss_cls_neg, _ = loss_cls_all[neg_inds].topk(num_neg)
        loss_cls = (loss_cls_all[pos_inds].sum() + topk_loss_cls_neg.sum()) / num_total_samples
        if self.reg_decoded_bbox:
            bbox_pred = self.bbox_coder.decode(anchor, bbox_pred)
        loss_bbox = smooth_l1_loss(
            bbox_pred, bbox_targets, bbox_weights, beta=float(self.train_cfg.get("smoothl1_beta", 1.0)),
            avg_factor=num_total_samples,
        )
        return loss_cls[None], loss_bbox

    def loss_by_feat(  # type: ignore[override]
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """``{"loss_cls": [per image (1,)], "loss_bbox": [per image ()]}`` for the head's outputs."""
        if self.train_cfg is None:
            raise ValueError("SSDHead: computing losses needs a train_cfg (assigner, neg_pos_ratio, ...)")
        gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        featmap_sizes = [tuple(featmap.shape[-2:]) for featmap in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ValueError(
                f"SSDHead: {len(featmap_sizes)} feature levels but the anchor generator has "
                f"{self.prior_generator.num_levels}"
            )
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, img_metas, device=device)
        targets = self.get_targets(
            anchor_list, valid_flag_list, gt_bboxes, img_metas, gt_bboxes_ignore_list=gt_bboxes_ignore,
            gt_labels_list=gt_labels, label_channels=1, unmap_outputs=True,
        )
        if targets is None:
            raise ValueError(
                "SSDHead: an image of the batch has no anchor inside it "
                f"(img_shapes {[tuple(m['img_shape']) for m in img_metas]})"
            )
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos, _ = targets

        num_images = len(img_metas)
        all_cls_scores = torch.cat(
            [s.permute(0, 2, 3, 1).reshape(num_images, -1, self.cls_out_channels) for s in cls_scores], 1
        )
        if not torch.isfinite(all_cls_scores).all():
            raise FloatingPointError("SSDHead: classification scores are infinite or NaN")
        all_labels = torch.cat(labels_list, -1).view(num_images, -1)
        all_label_weights = torch.cat(label_weights_list, -1).view(num_images, -1)
        all_bbox_preds = torch.cat([b.permute(0, 2, 3, 1).reshape(num_images, -1, 4) for b in bbox_preds], -2)
        all_bbox_targets = torch.cat(bbox_targets_list, -2).view(num_images, -1, 4)
        all_bbox_weights = torch.cat(bbox_weights_list, -2).view(num_images, -1, 4)
        all_anchors = [torch.cat(anchors) for anchors in anchor_list]

        losses_cls, losses_bbox = multi_apply(
            self.loss_single, all_cls_scores, all_bbox_preds, all_anchors, all_labels, all_label_weights,
            all_bbox_targets, all_bbox_weights, num_total_samples=num_total_pos,
        )
        return {"loss_cls": losses_cls, "loss_bbox": losses_bbox}
