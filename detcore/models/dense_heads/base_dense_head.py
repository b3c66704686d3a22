"""``BaseDenseHead``: the train/test entry points shared by every dense (per-location) head.

A dense head maps the neck's feature maps to per-level predictions (``forward``), turns them into
losses against the ground truth (``loss_by_feat``) or into detections (``predict_by_feat``). The
two entry points the detectors call are::

    head.loss(feats, gt_instances, img_metas, gt_ignored_instances=None) -> dict[str, Tensor | list[Tensor]]
    head.predict(feats, img_metas, rescale=True) -> list[Instances]
    head.loss_and_predict(feats, gt_instances, img_metas, gt_ignored_instances=None, proposal_cfg=None)
        -> (losses, list[Instances])   # one forward: an RPN's losses and its proposals

``predict_by_feat`` reproduces the reference's test numerics in one of two candidate orders, chosen
by ``test_cfg.postprocess_order``:

- ``"threshold_first"`` (default; the reference from 2.18 and 3.x): per level, sigmoid (or softmax)
  scores, every (anchor, class) pair above ``score_thr``, the ``nms_pre`` best of those pairs
  (``filter_scores_and_topk``), their boxes decoded with ``max_shape = img_shape``; the levels
  concatenated, boxes divided by ``scale_factor`` (``rescale``), scores times the score factor (when
  the head has one), then class-aware NMS and the ``max_per_img`` best.
- ``"topk_first"`` (the reference before 2.18): per level, the ``nms_pre`` anchors with the highest
  class score (times the score factor), decoded; the levels concatenated and rescaled, then
  ``multiclass_nms(score_thr, nms, max_per_img)``, which thresholds every class of those anchors.

The orders differ when a level has more than ``nms_pre`` candidates: an anchor whose best class is
weak but whose second class passes ``score_thr`` survives only the first, and the first keeps up to
``nms_pre`` pairs of the same anchor. ``with_nms=False`` (test-time augmentation) always returns the
``topk_first`` candidates with per-class scores. The last part (rescale, optional
``min_bbox_size`` filter, NMS) is :meth:`BaseDenseHead._bbox_post_process`, which heads with their
own candidate selection (an RPN head: one score per anchor, NMS per level) reuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.init import BaseModule
from detcore.models.utils import filter_scores_and_topk
from detcore.ops import multiclass_nms
from detcore.ops.nms import _batched_nms_with_cfg
from detcore.settings import NMS_SETTINGS, REQUIRED, Key, Settings
from detcore.structures.boxes import Boxes, scale_factor_tensor
from detcore.structures.instances import Instances

__all__ = ["BaseDenseHead", "scale_factor_tensor", "unpack_gt_instances"]

#: ``test_cfg.postprocess_order`` values (see the module docstring); the first is the default
POSTPROCESS_ORDERS = ("threshold_first", "topk_first")


def unpack_gt_instances(
    gt_instances: Sequence[Instances], gt_ignored_instances: Sequence[Instances] | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor | None] | None]:
    """Split per-image ``Instances`` into the reference's lists: ``gt_bboxes`` ``(N_i, 4)``, ``gt_labels``
    ``(N_i,)`` and ``gt_bboxes_ignore`` ``(M_i, 4)`` (``None`` when no ignored instances are given)."""
    gt_bboxes, gt_labels = [], []
    for i, inst in enumerate(gt_instances):
        if not inst.has("bboxes") or not inst.has("labels"):
            raise ValueError(f"gt_instances[{i}] needs fields 'bboxes' and 'labels', has {inst.keys()}")
        gt_bboxes.append(inst.bboxes)
        gt_labels.append(inst.labels)
    if gt_ignored_instances is None:
        return gt_bboxes, gt_labels, None
    if len(gt_ignored_instances) != len(gt_instances):
        raise ValueError(
            f"{len(gt_ignored_instances)} gt_ignored_instances for {len(gt_instances)} gt_instances"
        )
    ignored = [inst.get("bboxes") if inst is not None else None for inst in gt_ignored_instances]
    return gt_bboxes, gt_labels, ignored


class BaseDenseHead(BaseModule):
    """Base of dense heads. Subclasses set ``prior_generator``, ``bbox_coder``, ``cls_out_channels``,
    ``use_sigmoid_cls`` and ``test_cfg`` and implement ``forward`` and ``loss_by_feat``."""

    #: whether :meth:`_bbox_post_process` drops boxes not wider and higher than
    #: ``cfg['min_bbox_size']``; the reference 2.x single-stage heads accept that key and ignore it,
    #: its RPN head applies it.
    filters_min_bbox_size: bool = False

    #: the ``test_cfg`` keys read by :meth:`predict_by_feat` and :meth:`_bbox_post_process`
    test_settings = Settings(
        nms_pre=Key(int, -1, doc="candidates kept per level before NMS; -1: all"),
        min_bbox_size=Key(float, -1, doc="drop smaller boxes (heads with filters_min_bbox_size)"),
        score_thr=Key(float, REQUIRED, doc="drop candidates scoring at or below"),
        nms=Key(NMS_SETTINGS, REQUIRED, doc="the NMS table"),
        max_per_img=Key(int, -1, doc="detections kept per image; -1: all"),
        postprocess_order=Key(str, POSTPROCESS_ORDERS[0], doc=" or ".join(POSTPROCESS_ORDERS)),
    )

    def __init__(self, init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(init_cfg)

    # -- training ---------------------------------------------------------------------------------

    def loss(self, feats: Sequence[torch.Tensor], gt_instances: Sequence[Instances],
             img_metas: Sequence[dict],
             gt_ignored_instances: Sequence[Instances] | None = None) -> dict[str, Any]:
        """Run the head on ``feats`` (one ``(B, C, h_i, w_i)`` per level) and return its losses."""
        outs = self(feats)
        return self.loss_by_feat(*outs, gt_instances, img_metas, gt_ignored_instances)

    def loss_by_feat(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Losses from the head's outputs (``*outs, gt_instances, img_metas, gt_ignored_instances``)."""
        raise NotImplementedError

    def loss_and_predict(
        self,
        feats: Sequence[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
        proposal_cfg: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[Instances]]:
        """Losses and detections from one forward pass (a two-stage detector's RPN: losses + proposals).

        The detections are in the input image's coordinates (no rescale), selected with
        ``proposal_cfg`` (default ``test_cfg``); they are computed from detached outputs.
        """
        outs = self(feats)
        losses = self.loss_by_feat(*outs, gt_instances, img_metas, gt_ignored_instances)
        predictions = self.predict_by_feat(*outs, img_metas=img_metas, cfg=proposal_cfg, rescale=False)
        return losses, predictions

    # -- inference --------------------------------------------------------------------------------

    def predict(self, feats: Sequence[torch.Tensor], img_metas: Sequence[dict],
                rescale: bool = True) -> list[Instances]:
        """Detections, one ``Instances`` (bboxes, scores, labels) per image of the batch."""
        outs = self(feats)
        return self.predict_by_feat(*outs, img_metas=img_metas, rescale=rescale)

    def predict_by_feat(
        self,
        cls_scores: Sequence[torch.Tensor],
        bbox_preds: Sequence[torch.Tensor],
        score_factors: Sequence[torch.Tensor] | None = None,
        img_metas: Sequence[dict] | None = None,
        cfg: Mapping[str, Any] | None = None,
        rescale: bool = True,
        with_nms: bool = True,
    ) -> list[Instances]:
        """Detections from per-level outputs.

        Args:
            cls_scores: per level ``(B, A * cls_out_channels, h, w)`` logits.
            bbox_preds: per level ``(B, A * box_dim, h, w)`` box regressions.
            score_factors: optional per level ``(B, A, h, w)`` logits (e.g. centerness) whose sigmoid
                multiplies the class scores.
            img_metas: per image, with ``img_shape`` and ``scale_factor``.
            cfg: test settings (``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``, optional
                ``postprocess_order``); default ``test_cfg``.
            rescale: divide the boxes by ``scale_factor`` (original-image coordinates).
            with_nms: apply ``multiclass_nms``; without it, each ``Instances`` holds every candidate with
                ``bboxes`` ``(N, 4)``, ``scores`` ``(N, num_classes)`` (foreground classes, not yet
                multiplied by the factors) and, with score factors, ``score_factors`` ``(N,)``.

        Returns:
            one ``Instances`` per image: ``bboxes`` ``(K, 4)`` xyxy, ``scores`` ``(K,)``, ``labels`` ``(K,)``.
        """
        if img_metas is None:
            raise ValueError(f"{type(self).__name__}.predict_by_feat: 'img_metas' is required")
        if len(cls_scores) != len(bbox_preds):
            raise ValueError(
                f"{type(self).__name__}.predict_by_feat: {len(cls_scores)} levels of cls_scores but "
                f"{len(bbox_preds)} of bbox_preds"
            )
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise ValueError(
                f"{type(self).__name__}: no test_cfg (nms_pre, score_thr, nms, max_per_img) given"
            )
        num_levels = len(cls_scores)
        featmap_sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        mlvl_priors = self.prior_generator.grid_priors(
            featmap_sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device
        )
        results = []
        for img_id, img_meta in enumerate(img_metas):
            cls_list = [cls_scores[i][img_id].detach() for i in range(num_levels)]
            bbox_list = [bbox_preds[i][img_id].detach() for i in range(num_levels)]
            if score_factors is not None:
                factor_list: list[torch.Tensor | None] = [
                    score_factors[i][img_id].detach() for i in range(num_levels)
                ]
            else:
                factor_list = [None] * num_levels
            results.append(
                self._predict_by_feat_single(
                    cls_list, bbox_list, factor_list, mlvl_priors, img_meta, cfg, rescale, with_nms
                )
            )
        return results

    def _predict_by_feat_single(
        self,
        cls_score_list: list[torch.Tensor],
        bbox_pred_list: list[torch.Tensor],
        score_factor_list: list[torch.Tensor | None],
        mlvl_priors: list[torch.Tensor],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
        rescale: bool = True,
        with_nms: bool = True,
    ) -> Instances:
        """Detections of one image from its per-level ``(A * C, h, w)`` / ``(A * 4, h, w)`` maps."""
        order = str(cfg.get("postprocess_order", POSTPROCESS_ORDERS[0]))
        if order not in POSTPROCESS_ORDERS:
            raise ValueError(
                f"{type(self).__name__}: test_cfg.postprocess_order must be one of {POSTPROCESS_ORDERS} "
                f"('threshold_first': reference 2.18+ and 3.x; 'topk_first': before 2.18), got {order!r}"
            )
        if with_nms and order == "threshold_first":
            levels = list(zip(cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors))
            return self._predict_threshold_first(levels, img_meta, cfg, rescale)
        img_shape = tuple(img_meta["img_shape"][:2])
        nms_pre = int(cfg.get("nms_pre", -1))
        with_factors = score_factor_list[0] is not None
        mlvl_bboxes, mlvl_scores, mlvl_factors = [], [], []
        for cls_score, bbox_pred, factor, priors in zip(
            cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors
        ):
            cls_score, bbox_pred = self._flatten_level(cls_score, bbox_pred)
            scores = cls_score.sigmoid() if self.use_sigmoid_cls else cls_score.softmax(-1)
            if with_factors:
                factor = factor.permute(1, 2, 0).reshape(-1).sigmoid()
            if 0 < nms_pre < scores.shape[0]:
                fg_scores = scores if self.use_sigmoid_cls else scores[:, :-1]
                if with_factors:
                    fg_scores = fg_scores * factor[:, None]
                max_scores, _ = fg_scores.max(dim=1)
                _, topk_inds = max_scores.topk(nms_pre)
                priors = priors[topk_inds, :]
                bbox_pred = bbox_pred[topk_inds, :]
                scores = scores[topk_inds, :]
                if with_factors:
                    factor = factor[topk_inds]
            mlvl_bboxes.append(self.bbox_coder.decode(priors, bbox_pred, max_shape=img_shape))
            mlvl_scores.append(scores)
            if with_factors:
                mlvl_factors.append(factor)
        bboxes = torch.cat(mlvl_bboxes)
        scores = torch.cat(mlvl_scores)
        # foreground columns only (the softmax background column is last)
        results = Instances(bboxes=bboxes, scores=scores if self.use_sigmoid_cls else scores[:, :-1])
        if with_factors:
            results.score_factors = torch.cat(mlvl_factors)
        return self._bbox_post_process(results, cfg, img_meta, rescale=rescale, with_nms=with_nms)

    def _flatten_level(
        self, cls_score: torch.Tensor, bbox_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One level of one image: ``(A * C, h, w)`` / ``(A * box_dim, h, w)`` maps -> rows ``(h * w * A, C)``
        / ``(h * w * A, box_dim)`` in prior order."""
        if cls_score.shape[-2:] != bbox_pred.shape[-2:]:
            raise ValueError(
                f"{type(self).__name__}: cls_score {tuple(cls_score.shape)} and bbox_pred "
                f"{tuple(bbox_pred.shape)} differ in size"
            )
        box_dim = getattr(self.bbox_coder, "encode_size", 4)
        return (cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels),
                bbox_pred.permute(1, 2, 0).reshape(-1, box_dim))

    def _predict_threshold_first(
        self,
        levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]],
        img_meta: Mapping[str, Any],
        cfg: Mapping[str, Any],
        rescale: bool,
    ) -> Instances:
        """``postprocess_order = "threshold_first"``: per level (``(cls_score, bbox_pred, score_factor,
        priors)`` of one image), the (anchor, class) pairs above ``score_thr``, the ``nms_pre`` best of
        them; then :meth:`_bbox_post_process` (class-aware NMS)."""
        img_shape = tuple(img_meta["img_shape"][:2])
        nms_pre = int(cfg.get("nms_pre", -1))
        score_thr = float(cfg["score_thr"])
        with_factors = levels[0][2] is not None
        mlvl_bboxes, mlvl_scores, mlvl_labels, mlvl_factors = [], [], [], []
        for cls_score, bbox_pred, factor, priors in levels:
            cls_score, bbox_pred = self._flatten_level(cls_score, bbox_pred)
            scores = cls_score.sigmoid() if self.use_sigmoid_cls else cls_score.softmax(-1)[:, :-1]
            scores, labels, keep, kept = filter_scores_and_topk(
                scores, score_thr, nms_pre, {"bbox_pred": bbox_pred, "priors": priors}
            )
            mlvl_bboxes.append(self.bbox_coder.decode(kept["priors"], kept["bbox_pred"], max_shape=img_shape))
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)
            if with_factors:
                mlvl_factors.append(factor.permute(1, 2, 0).reshape(-1).sigmoid()[keep])
        results = Instances(
            bboxes=torch.cat(mlvl_bboxes), scores=torch.cat(mlvl_scores), labels=torch.cat(mlvl_labels)
        )
        if with_factors:
            results.score_factors = torch.cat(mlvl_factors)
        return self._bbox_post_process(results, cfg, img_meta, rescale=rescale, with_nms=True)

    def _bbox_post_process(
        self,
        results: Instances,
        cfg: Mapping[str, Any],
        img_meta: Mapping[str, Any],
        rescale: bool = False,
        with_nms: bool = True,
    ) -> Instances:
        """Rescale, filter and NMS the candidates of one image.

        Args:
            results: ``bboxes`` ``(N, 4)`` xyxy in the input image, and one of: ``scores`` ``(N, C)``
                (per foreground class; ``multiclass_nms`` with ``score_thr``), ``scores`` ``(N,)`` with
                ``labels`` ``(N,)`` ((box, class) pairs already thresholded; NMS per class), or
                ``scores`` ``(N,)`` with ``level_ids`` ``(N,)`` (NMS within each level, label 0). The
                first two take optional ``score_factors`` ``(N,)`` that multiply the scores.
            cfg: ``score_thr`` (class scores only), ``nms``, ``max_per_img`` and, with
                :attr:`filters_min_bbox_size`, ``min_bbox_size``.
            img_meta: with ``scale_factor`` (used by ``rescale``).
            rescale: divide the boxes by ``scale_factor`` (original-image coordinates).
            with_nms: without it, the rescaled (and filtered) candidates are returned as they are.

        Returns:
            ``Instances`` with ``bboxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``labels`` ``(K,)`` after NMS.
        """
        bboxes = results.bboxes
        if rescale:
            results.bboxes = bboxes = Boxes(bboxes).unscale(img_meta["scale_factor"]).tensor
        min_size = float(cfg.get("min_bbox_size", -1)) if self.filters_min_bbox_size else -1.0
        if min_size >= 0:
            valid = Boxes(bboxes).nonempty(min_size)
            if not valid.all():
                results = results[valid]
        if not with_nms:
            return results
        max_per_img = int(cfg.get("max_per_img", -1))
        scores = results.scores
        if scores.dim() == 1 and results.has("labels"):  # thresholded (box, class) pairs
            factors = results.get("score_factors")
            if factors is not None:
                scores = scores * factors
            if scores.numel() == 0:
                return Instances(bboxes=results.bboxes, scores=scores, labels=results.labels)
            dets, keep = _batched_nms_with_cfg(results.bboxes, scores, results.labels, dict(cfg["nms"]))
            if max_per_img > 0:
                dets, keep = dets[:max_per_img], keep[:max_per_img]
            return Instances(bboxes=dets[:, :4], scores=dets[:, 4], labels=results.labels[keep])
        if scores.dim() == 1:  # one score per candidate, NMS within each level
            if not results.has("level_ids"):
                raise ValueError(f"{type(self).__name__}: single-score candidates need 'level_ids'")
            dets, keep = _batched_nms_with_cfg(results.bboxes, scores, results.level_ids, dict(cfg["nms"]))
            if max_per_img > 0:
                dets, keep = dets[:max_per_img], keep[:max_per_img]
            labels = torch.zeros(dets.shape[0], dtype=torch.long, device=dets.device)
            return Instances(bboxes=dets[:, :4], scores=dets[:, 4], labels=labels)
        # multiclass_nms expects a last (background) column, which it ignores
        scores = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], dim=1)
        factors = results.get("score_factors")
        dets, labels = multiclass_nms(
            results.bboxes, scores, float(cfg["score_thr"]), dict(cfg["nms"]), max_per_img,
            score_factors=factors,
        )
        return Instances(bboxes=dets[:, :4], scores=dets[:, 4], labels=labels)
