"""``GARPNHead``: GA-RPN, the region proposal network with guided anchors.

``rpn_conv`` (3x3, ReLU) then :class:`GuidedAnchorHead`'s layers (one objectness class). Losses are
named as the reference's: ``loss_rpn_cls``, ``loss_rpn_bbox``, ``loss_anchor_shape``,
``loss_anchor_loc``.

Proposals of one image (reference 2.x): per level, the kept locations (location score >=
``loc_filter_thr`` in eval mode; all while training), the ``nms_pre`` best by objectness, decoded at the
guided anchors (``max_shape = img_shape``), boxes not wider and higher than ``min_bbox_size`` dropped,
NMS within the level, its first ``nms_post``; then over the levels the ``max_per_img`` best by score
(or, with ``nms_across_levels``, one more NMS and its first ``max_per_img``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from det_plugin_guided_anchoring.guided_anchor_head import GuidedAnchorHead
from detcore.ops import nms
from detcore.settings import REQUIRED, Key, Settings
from detcore.structures.boxes import scale_factor_tensor
from detcore.structures.instances import Instances


class GARPNHead(GuidedAnchorHead):
    """Guided-anchor RPN head.

    Args:
        in_channels: channels of the neck's outputs.
        num_classes: kept at 1 (objectness); accepted for configs that spell it out.
        **kwargs: the other :class:`GuidedAnchorHead` arguments (``train_cfg``: the detector's
            ``train_cfg.rpn``; ``test_cfg``: its ``test_cfg.rpn``).
    """

    test_settings = Settings(
        nms_pre=Key(int, -1, doc="top-scoring kept locations per level before NMS; -1: all"),
        nms_post=Key(int, REQUIRED, doc="proposals kept per level after its NMS"),
        max_per_img=Key(int, REQUIRED, doc="proposals kept per image"),
        min_bbox_size=Key(float, -1, doc="drop proposals not wider and higher than this (< 0: keep all)"),
        nms=Key(
            Settings(type=Key(str, "nms", doc="plain NMS only"), iou_threshold=Key(float, 0.7)), REQUIRED
        ),
        nms_across_levels=Key(bool, False, doc="one more NMS over the levels' proposals"),
    )

    def __init__(self, in_channels: int, num_classes: int = 1, **kwargs: Any) -> None:
        if int(num_classes) != 1:
            raise ValueError(f"GARPNHead: num_classes is the objectness class (1), got {num_classes}")
        super().__init__(1, in_channels, **kwargs)

    def _init_layers(self) -> None:
        self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        super()._init_layers()

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return super().forward_single(F.relu(self.rpn_conv(x), inplace=True))

    def loss_by_feat(  # type: ignore[override]
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        shape_preds: list[torch.Tensor],
        loc_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """Every gt box is an object (label 0); the reference's RPN loss names."""
        objectness = []
        for i, inst in enumerate(gt_instances):
            if not inst.has("bboxes"):
                raise ValueError(f"GARPNHead: gt_instances[{i}] has no 'bboxes' (fields: {inst.keys()})")
            boxes = inst.bboxes
            objectness.append(Instances(
                bboxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
            ))
        losses = super().loss_by_feat(cls_scores, bbox_preds, shape_preds, loc_preds, objectness, img_metas,
                                      gt_ignored_instances)
        return {"loss_rpn_cls": losses["loss_cls"], "loss_rpn_bbox": losses["loss_bbox"],
                "loss_anchor_shape": losses["loss_shape"], "loss_anchor_loc": losses["loss_loc"]}

    def predict_by_feat(self, *args: Any, rescale: bool = False, with_nms: bool = True,  # type: ignore[override]
                        **kwargs: Any) -> list[Instances]:
        """Proposals per image: ``Instances(bboxes (K, 4), scores (K,), labels (K,) = 0)``, best first."""
        if not with_nms:
            raise ValueError("GARPNHead.predict_by_feat: proposals are defined after NMS (with_nms=True)")
        return super().predict_by_feat(*args, rescale=rescale, with_nms=True, **kwargs)

    def _predict_guided_single(
        self,
        cls_score_list: list[torch.Tensor],
        bbox_pred_list: list[torch.Tensor],
        anchor_list: list[torch.Tensor],
        mask_list: list[torch.Tensor],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
        rescale: bool,
        with_nms: bool,
    ) -> Instances:
        for key in ("nms", "nms_post", "max_per_img"):
            if key not in cfg:
                raise ValueError(f"GARPNHead: proposal settings need '{key}' (have {sorted(cfg)})")
        if cfg["nms"].get("type", "nms") != "nms":
            raise ValueError(f"GARPNHead: only plain NMS, got nms.type {cfg['nms'].get('type')!r}")
        iou_thr = float(cfg["nms"].get("iou_threshold", 0.7))
        img_shape = tuple(img_meta["img_shape"][:2])
        nms_pre, nms_post = int(cfg.get("nms_pre", -1)), int(cfg["nms_post"])
        min_size = float(cfg.get("min_bbox_size", -1))
        device = cls_score_list[0].device
        mlvl_boxes, mlvl_scores = [], []
        levels = zip(cls_score_list, bbox_pred_list, anchor_list, mask_list)
        for cls_score, bbox_pred, anchors, mask in levels:
            if not mask.any():
                continue
            cls_score = cls_score.permute(1, 2, 0)
            if self.use_sigmoid_cls:
                scores = cls_score.reshape(-1).sigmoid()
            else:
                scores = cls_score.reshape(-1, 2).softmax(dim=1)[:, 0]
            scores = scores[mask]
            deltas = bbox_pred.permute(1, 2, 0).reshape(-1, 4)[mask]
            if 0 < nms_pre < scores.shape[0]:
                _, topk = scores.topk(nms_pre)
                deltas, anchors, scores = deltas[topk], anchors[topk], scores[topk]
            boxes = self.bbox_coder.decode(anchors, deltas, max_shape=img_shape)
            if min_size >= 0:
                w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
                valid = (w > min_size) & (h > min_size)
                boxes, scores = boxes[valid], scores[valid]
            keep = nms(boxes, scores, iou_thr)[:nms_post]
            mlvl_boxes.append(boxes[keep])
            mlvl_scores.append(scores[keep])
        boxes = torch.cat(mlvl_boxes) if mlvl_boxes else torch.zeros(0, 4, device=device)
        scores = torch.cat(mlvl_scores) if mlvl_scores else torch.zeros(0, device=device)
        max_per_img = int(cfg["max_per_img"])
        if cfg.get("nms_across_levels", False) and boxes.numel():
            keep = nms(boxes, scores, iou_thr)[:max_per_img]
        else:
            keep = scores.topk(min(max_per_img, scores.numel())).indices
        boxes, scores = boxes[keep], scores[keep]
        if rescale:
            boxes = boxes / scale_factor_tensor(img_meta["scale_factor"], boxes)
        return Instances(bboxes=boxes, scores=scores,
                         labels=torch.zeros(scores.numel(), dtype=torch.long, device=device))
