"""``RPNHead``: the region proposal network of Faster R-CNN, an :class:`AnchorHead` with one class.

Per level: a shared 3x3 conv ``rpn_conv`` (ReLU), then 1x1 convs ``rpn_cls`` (``A`` objectness logits,
or ``2A`` with a softmax loss) and ``rpn_reg`` (``4A`` deltas). Training assigns anchors to the gt
boxes without their labels (one foreground class, label 0); the losses are ``loss_rpn_cls`` and
``loss_rpn_bbox``. The options of the MMDetection paper's RPN study (Table 9) are plain settings:
``loss_bbox = {type = "SmoothL1Loss", beta = ...}``, ``train_cfg.allowed_border`` and
``train_cfg.sampler.neg_pos_ub``.

Proposals of one image (the reference 2.x numerics):

1. per level, objectness scores (sigmoid of the ``(h, w, A)``-ordered logits; softmax column 0 with
   two channels); with ``0 < nms_pre < count`` the ``nms_pre`` best, sorted by descending score;
2. deltas decoded at the anchors with ``max_shape = img_shape``; levels concatenated, each box
   remembering its level;
3. with ``min_bbox_size >= 0`` only boxes wider and higher than it are kept;
4. NMS within each level (``batched_nms`` with the level as class, ``nms.iou_threshold``), the first
   ``max_per_img`` kept; ``rescale`` then divides them by ``scale_factor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detcore.models.dense_heads import AnchorHead
from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.layers import ConvModule
from detcore.settings import Key, Settings
from detcore.structures.instances import Instances


class RPNHead(AnchorHead):
    """Region proposal head.

    Args:
        in_channels: channels of the neck's outputs.
        num_convs: shared 3x3 convs before the predictors (1: the plain ``rpn_conv``; more: a
            ``Sequential`` of ConvModules).
        num_classes: kept at 1 (objectness); accepted for configs that spell it out.
        anchor_generator: one 8x-stride anchor, ratios 0.5/1/2, strides 4-64 by default.
        loss_cls / loss_bbox: sigmoid cross-entropy and L1 by default.
        init_cfg: Normal(std 0.01) on every Conv2d.
        **kwargs: the remaining :class:`AnchorHead` arguments (feat_channels, bbox_coder, train_cfg,
            test_cfg, ...). ``train_cfg``: the detector's ``train_cfg.rpn``; ``test_cfg``: its
            ``test_cfg.rpn`` (``nms_pre``, ``nms``, ``max_per_img``, ``min_bbox_size``).
    """

    #: the proposals (test and training) filter by ``min_bbox_size`` in :meth:`_bbox_post_process`
    filters_min_bbox_size = True

    #: what ``_proposals_single`` and ``_bbox_post_process`` read (test and training proposals)
    test_settings = Settings(
        nms_pre=Key(int, -1, doc="top-scoring anchors kept per level before NMS; -1: all"),
        min_bbox_size=Key(float, -1, doc="drop proposals not wider and higher than this"),
        nms=Key(
            Settings(
                type=Key(str, "nms", doc="plain NMS only"),
                iou_threshold=Key(float, 0.7),
                iou_thr=Key(float, doc="old spelling of iou_threshold"),
            )
        ),
        nms_thr=Key(float, doc="the reference 2.x's deprecated spelling of nms.iou_threshold"),
        max_per_img=Key(int, -1, doc="proposals kept per image; -1: all"),
    )

    def __init__(
        self,
        in_channels: int,
        num_convs: int = 1,
        num_classes: int = 1,
        anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator",
            "scales": [8],
            "ratios": [0.5, 1.0, 2.0],
            "strides": [4, 8, 16, 32, 64],
        },
        loss_cls: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "CrossEntropyLoss",
            "use_sigmoid": True,
            "loss_weight": 1.0,
        },
        loss_bbox: Mapping[str, Any] = {"type": "L1Loss", "loss_weight": 1.0},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal",
            "layer": "Conv2d",
            "std": 0.01,
        },
        **kwargs: Any,
    ) -> None:
        if int(num_classes) != 1:
            raise ValueError(f"RPNHead: num_classes is the objectness class (1), got {num_classes}")
        if int(num_convs) < 1:
            raise ValueError(f"RPNHead: num_convs must be >= 1, got {num_convs}")
        self.num_convs = int(num_convs)
        super().__init__(
            1,
            in_channels,
            anchor_generator=anchor_generator,
            loss_cls=loss_cls,
            loss_bbox=loss_bbox,
            init_cfg=init_cfg,
            **kwargs,
        )

    def _init_layers(self) -> None:
        if self.num_convs > 1:
            self.rpn_conv = nn.Sequential(
                *[
                    ConvModule(
                        self.in_channels if i == 0 else self.feat_channels,
                        self.feat_channels,
                        3,
                        padding=1,
                        inplace=False,
                    )
                    for i in range(self.num_convs)
                ]
            )
        else:
            self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(self.feat_channels, self.num_base_priors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level ``(B, C, h, w)`` -> objectness ``(B, A * cls_out, h, w)``, deltas ``(B, 4A, h, w)``."""
        x = F.relu(self.rpn_conv(x), inplace=True)
        return self.rpn_cls(x), self.rpn_reg(x)

    # -- training ---------------------------------------------------------------------------------

    def loss_by_feat(
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """``{"loss_rpn_cls": [per level], "loss_rpn_bbox": [per level]}``; every gt box is foreground."""
        objectness = []
        for i, inst in enumerate(gt_instances):
            if not inst.has("bboxes"):
                raise ValueError(f"RPNHead: gt_instances[{i}] has no 'bboxes' (fields: {inst.keys()})")
            boxes = inst.bboxes
            objectness.append(
                Instances(bboxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long, device=boxes.device))
            )
        losses = super().loss_by_feat(cls_scores, bbox_preds, objectness, img_metas, gt_ignored_instances)
        return {"loss_rpn_cls": losses["loss_cls"], "loss_rpn_bbox": losses["loss_bbox"]}

    # -- proposals --------------------------------------------------------------------------------

    def predict_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        score_factors: Sequence[torch.Tensor] | None = None,
        img_metas: Sequence[dict] | None = None,
        cfg: Mapping[str, Any] | None = None,
        rescale: bool = False,
        with_nms: bool = True,
    ) -> list[Instances]:
        """Proposals per image: ``Instances(bboxes (K, 4), scores (K,), labels (K,) = 0)``, best first.

        Args:
            cls_scores / bbox_preds: per level ``(B, A * cls_out, h, w)`` / ``(B, A * 4, h, w)``.
            score_factors: unused (RPN has none); must be ``None``.
            img_metas: per image, with ``img_shape`` (and ``scale_factor`` for ``rescale``).
            cfg: ``nms_pre``, ``nms``, ``max_per_img``, ``min_bbox_size``; default ``test_cfg``.
            rescale: divide the proposals by ``scale_factor`` (original-image coordinates).
            with_nms: must be true (proposals are defined after NMS).
        """
        if score_factors is not None or not with_nms:
            raise ValueError("RPNHead.predict_by_feat: no score factors, and proposals always use NMS")
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise ValueError(
                "RPNHead: no proposal settings (test_cfg: nms_pre, nms, max_per_img, min_bbox_size)"
            )
        return super().predict_by_feat(
            cls_scores, bbox_preds, img_metas=img_metas, cfg=cfg, rescale=rescale, with_nms=True
        )

    def _predict_by_feat_single(
        self,
        cls_score_list: list[torch.Tensor],
        bbox_pred_list: list[torch.Tensor],
        score_factor_list: list[torch.Tensor | None],
        mlvl_priors: list[torch.Tensor],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
        rescale: bool = False,
        with_nms: bool = True,
    ) -> Instances:
        """Proposals of one image (the base class's per-image loop calls this)."""
        props = self._proposals_single(cls_score_list, bbox_pred_list, mlvl_priors, img_meta, cfg)
        if rescale:
            props.bboxes = props.bboxes / scale_factor_tensor(img_meta["scale_factor"], props.bboxes)
        return props

    def _proposals_single(
        self,
        cls_score_list: list[torch.Tensor],
        bbox_pred_list: list[torch.Tensor],
        mlvl_anchors: list[torch.Tensor],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
    ) -> Instances:
        """Proposals of one image from its per-level ``(A * cls_out, h, w)`` / ``(A * 4, h, w)`` maps."""
        img_shape = tuple(img_meta["img_shape"][:2])
        nms_pre = int(cfg.get("nms_pre", -1))
        mlvl_scores, mlvl_deltas, mlvl_anchors_kept, level_ids = [], [], [], []
        for level, (cls_score, bbox_pred, anchors) in enumerate(
            zip(cls_score_list, bbox_pred_list, mlvl_anchors)
        ):
            if cls_score.shape[-2:] != bbox_pred.shape[-2:]:
                raise ValueError(
                    f"RPNHead: level {level}: cls_score {tuple(cls_score.shape)} and bbox_pred "
                    f"{tuple(bbox_pred.shape)} differ in size"
                )
            cls_score = cls_score.permute(1, 2, 0)
            if self.use_sigmoid_cls:
                scores = cls_score.reshape(-1).sigmoid()
            else:  # two channels: foreground is column 0, background 1
                scores = cls_score.reshape(-1, 2).softmax(dim=1)[:, 0]
            deltas = bbox_pred.permute(1, 2, 0).reshape(-1, 4)
            if 0 < nms_pre < scores.shape[0]:
                scores, rank_inds = scores.sort(descending=True)
                topk_inds = rank_inds[:nms_pre]
                scores = scores[:nms_pre]
                deltas = deltas[topk_inds, :]
                anchors = anchors[topk_inds, :]
            mlvl_scores.append(scores)
            mlvl_deltas.append(deltas)
            mlvl_anchors_kept.append(anchors)
            level_ids.append(torch.full((scores.size(0),), level, dtype=torch.long, device=scores.device))
        proposals = self.bbox_coder.decode(
            torch.cat(mlvl_anchors_kept), torch.cat(mlvl_deltas), max_shape=img_shape
        )
        candidates = Instances(
            bboxes=proposals, scores=torch.cat(mlvl_scores), level_ids=torch.cat(level_ids)
        )
        if "nms" not in cfg and "nms_thr" in cfg:  # the reference 2.x's deprecated spelling
            cfg = {**cfg, "nms": {"type": "nms", "iou_threshold": float(cfg["nms_thr"])}}
        if "nms" not in cfg:
            raise ValueError(
                "RPNHead: proposal settings need an 'nms' table ({type = 'nms', iou_threshold = 0.7})"
            )
        # min_bbox_size filter, NMS within each level, the first max_per_img (input-image coordinates)
        return self._bbox_post_process(candidates, cfg, img_meta, rescale=False)
