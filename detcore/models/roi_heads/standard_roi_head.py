"""``StandardRoIHead``: the RoI stage of Fast / Faster / Mask R-CNN.

Training, per image (reference 2.x): the proposals are assigned to the ground truth by
``train_cfg['assigner']`` (with the gt labels) and sampled by ``train_cfg['sampler']`` (the gt boxes
prepended as proposals with ``add_gt_as_proposals``; an image without ground truth samples only
negatives). The sampled RoIs of all images go through the box extractor and box head together; the
positives' RoIs through the mask extractor and mask head.

Test: the box branch classifies and regresses every proposal, ``multiclass_nms`` keeps the
detections; with a mask head the boxes stay in input-image coordinates for the mask RoIs and the mask
head rescales them (with ``rescale``) while pasting the masks into the original image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import torch

from detcore.models.dense_heads.base_dense_head import unpack_gt_instances
from detcore.models.roi_heads.base_roi_head import BaseRoIHead, proposal_boxes
from detcore.models.task_utils.sampling_result import SamplingResult
from detcore.models.utils import bbox2roi
from detcore.registry import build
from detcore.settings import REQUIRED, Delegate, Key, Settings
from detcore.structures.instances import Instances


class StandardRoIHead(BaseRoIHead):
    """Box branch plus an optional mask branch (see :class:`BaseRoIHead` for the arguments)."""

    #: the ``train_cfg`` keys read here, plus those the box and mask heads declare
    train_settings = Settings(
        assigner=Key(kind="task_util", default=REQUIRED, doc="assigns proposals to the ground truth"),
        sampler=Key(kind="task_util", default=REQUIRED, doc="samples the assigned proposals"),
        debug=Key(bool, False, doc="accepted for the reference's configs; unused"),
    ).including(Delegate("bbox_head"), Delegate("mask_head"))
    #: the ``test_cfg`` keys the box and mask heads declare
    test_settings = Settings().including(Delegate("bbox_head"), Delegate("mask_head"))

    def init_bbox_head(
        self, bbox_roi_extractor: Mapping[str, Any] | None, bbox_head: Mapping[str, Any]
    ) -> None:
        name = type(self).__name__
        if bbox_roi_extractor is None:
            raise ValueError(f"{name}: a bbox_head needs a bbox_roi_extractor table")
        self.bbox_roi_extractor = build(
            "roi_extractor", bbox_roi_extractor, where=f"{name}.bbox_roi_extractor"
        )
        self.bbox_head = build("roi_head", bbox_head, where=f"{name}.bbox_head")

    def init_mask_head(
        self, mask_roi_extractor: Mapping[str, Any] | None, mask_head: Mapping[str, Any]
    ) -> None:
        name = type(self).__name__
        if mask_roi_extractor is not None:
            self.mask_roi_extractor = build(
                "roi_extractor", mask_roi_extractor, where=f"{name}.mask_roi_extractor"
            )
            self.share_roi_extractor = False
        else:
            if not self.with_bbox:
                raise ValueError(f"{name}: a mask head without mask_roi_extractor needs the bbox branch")
            self.share_roi_extractor = True
            self.mask_roi_extractor = self.bbox_roi_extractor
        self.mask_head = build("roi_head", mask_head, where=f"{name}.mask_head")

    def init_assigner_sampler(self) -> None:
        self.bbox_assigner = self.bbox_sampler = None
        if not self.train_cfg:
            return
        where = f"{type(self).__name__}.train_cfg"
        for key in ("assigner", "sampler"):
            if key not in self.train_cfg:
                raise ValueError(f"{where}: needs an '{key}' table (the detector's train_cfg.rcnn.{key})")
        self.bbox_assigner = build("task_util", self.train_cfg["assigner"], where=f"{where}.assigner")
        self.bbox_sampler = build("task_util", self.train_cfg["sampler"], where=f"{where}.sampler")

    # -- forward pieces ---------------------------------------------------------------------------

    def _bbox_forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> dict[str, torch.Tensor]:
        """RoIs ``(K, 5)`` -> ``cls_score`` ``(K, C + 1)``, ``bbox_pred`` ``(K, 4C | 4)``, ``bbox_feats``."""
        bbox_feats = self.bbox_roi_extractor(feats[: self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        return {"cls_score": cls_score, "bbox_pred": bbox_pred, "bbox_feats": bbox_feats}

    def _mask_forward(
        self,
        feats: Sequence[torch.Tensor],
        rois: torch.Tensor | None = None,
        pos_inds: torch.Tensor | None = None,
        bbox_feats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask logits ``(K, C | 1, 28, 28)`` of RoIs ``(K, 5)``, or of the rows ``pos_inds`` (bool) of
        the box branch's features when the extractor is shared."""
        if rois is not None:
            mask_feats = self.mask_roi_extractor(feats[: self.mask_roi_extractor.num_inputs], rois)
            if self.with_shared_head:
                mask_feats = self.shared_head(mask_feats)
        else:
            if pos_inds is None or bbox_feats is None:
                raise ValueError("_mask_forward: give rois, or pos_inds with bbox_feats")
            mask_feats = bbox_feats[pos_inds]
        return self.mask_head(mask_feats)

    # -- training ---------------------------------------------------------------------------------

    def _ohem_loss_fn(self, feats: Sequence[torch.Tensor], img_id: int) -> Callable[..., torch.Tensor]:
        """Per-box classification loss of image ``img_id``'s boxes, for hard-example samplers."""

        def loss_fn(bboxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            img_feats = [lvl[img_id : img_id + 1] for lvl in feats]
            out = self._bbox_forward(img_feats, bbox2roi([bboxes]))
            weights = out["cls_score"].new_ones(out["cls_score"].size(0))
            return self.bbox_head.loss_cls(out["cls_score"], labels, weights, reduction_override="none")

        return loss_fn

    def sample(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> list[SamplingResult]:
        """Assign and sample each image's proposals (gt boxes added per the sampler's setting)."""
        name = type(self).__name__
        if self.bbox_assigner is None:
            raise ValueError(f"{name}: training needs a train_cfg (the detector's train_cfg.rcnn)")
        if len(proposals) != len(gt_instances):
            raise ValueError(f"{name}: {len(proposals)} proposal sets for {len(gt_instances)} images")
        boxes = proposal_boxes(proposals, f"{name}.loss")
        gt_bboxes, gt_labels, gt_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        gt_ignore = gt_ignore if gt_ignore is not None else [None] * len(boxes)
        results = []
        for i, props in enumerate(boxes):
            assign_result = self.bbox_assigner.assign(props, gt_bboxes[i], gt_ignore[i], gt_labels[i])
            results.append(
                self.bbox_sampler.sample(
                    assign_result,
                    props,
                    gt_bboxes[i],
                    gt_labels[i],
                    loss_fn=self._ohem_loss_fn(feats, i),
                    background_label=self.bbox_head.num_classes,
                )
            )
        return results

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "acc", "loss_bbox"}`` (+ ``"loss_mask"``) for a batch.

        Args:
            feats: the neck's levels ``(B, C, h_l, w_l)``.
            proposals: per image ``Instances(bboxes (n_i, 4))`` (or ``(n_i, 4 | 5)`` tensors), detached,
                in input-image pixels.
            gt_instances: per image ``bboxes`` ``(N_i, 4)``, ``labels`` ``(N_i,)`` (+ ``masks``).
            img_metas: per image meta dicts.
            gt_ignored_instances: per image ignored boxes, or ``None``.
        """
        sampling_results = self.sample(feats, proposals, gt_instances, gt_ignored_instances)
        losses: dict[str, torch.Tensor] = {}
        bbox_results = None
        if self.with_bbox:
            rois = bbox2roi([res.bboxes for res in sampling_results])
            bbox_results = self._bbox_forward(feats, rois)
            out = self.bbox_head.loss_and_target(
                bbox_results["cls_score"], bbox_results["bbox_pred"], rois, sampling_results, self.train_cfg
            )
            losses.update(out["loss_bbox"])
        if self.with_mask:
            if not self.share_roi_extractor:
                pos_rois = bbox2roi([res.pos_bboxes for res in sampling_results])
                mask_preds = self._mask_forward(feats, rois=pos_rois)
            else:
                pos_inds = torch.cat(
                    [
                        torch.cat(
                            [
                                torch.ones(len(res.pos_bboxes), dtype=torch.bool),
                                torch.zeros(len(res.neg_bboxes), dtype=torch.bool),
                            ]
                        )
                        for res in sampling_results
                    ]
                ).to(feats[0].device)
                mask_preds = self._mask_forward(
                    feats, pos_inds=pos_inds, bbox_feats=bbox_results["bbox_feats"]
                )
            mask_out = self.mask_head.loss_and_target(
                mask_preds, sampling_results, gt_instances, self.train_cfg
            )
            losses["loss_mask"] = mask_out["loss_mask"]
        return losses

    # -- inference --------------------------------------------------------------------------------

    def predict_bbox(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        proposals: Sequence[Instances | torch.Tensor],
        rcnn_test_cfg: Mapping[str, Any] | None,
        rescale: bool = False,
    ) -> list[Instances]:
        """Box detections per image: ``bboxes`` ``(K, 4)``, ``scores`` ``(K,)``, ``labels`` ``(K,)``."""
        boxes = proposal_boxes(proposals, f"{type(self).__name__}.predict")
        rois = bbox2roi(boxes)
        if rois.shape[0] == 0:
            return [_empty_detections(rois) for _ in img_metas]
        bbox_results = self._bbox_forward(feats, rois)
        counts = [len(b) for b in boxes]
        cls_scores = bbox_results["cls_score"].split(counts, 0)
        bbox_pred = bbox_results["bbox_pred"]
        bbox_preds = bbox_pred.split(counts, 0) if bbox_pred is not None else [None] * len(counts)
        return self.bbox_head.predict_by_feat(
            rois.split(counts, 0), cls_scores, bbox_preds, img_metas, rcnn_test_cfg, rescale=rescale
        )

    def predict_mask(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        results: list[Instances],
        rescale: bool = False,
    ) -> list[Instances]:
        """Add ``masks`` to box detections in input-image coordinates (the mask head rescales them)."""
        bboxes = [r.bboxes for r in results]
        mask_rois = bbox2roi(bboxes)
        mask_preds = self._mask_forward(feats, rois=mask_rois)
        mask_preds = list(mask_preds.split([len(b) for b in bboxes], 0))
        return self.mask_head.predict_by_feat(mask_preds, results, img_metas, self.test_cfg, rescale=rescale)

    def predict(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        img_metas: Sequence[dict],
        rescale: bool = False,
    ) -> list[Instances]:
        """One ``Instances`` per image (``bboxes``, ``scores``, ``labels``, + ``masks`` with a mask
        head); original-image coordinates with ``rescale``."""
        if not self.with_bbox:
            raise ValueError(f"{type(self).__name__}: prediction needs the bbox branch")
        if self.test_cfg is None:
            raise ValueError(f"{type(self).__name__}: no test_cfg (the detector's test_cfg.rcnn)")
        results = self.predict_bbox(
            feats, img_metas, proposals, self.test_cfg, rescale=rescale and not self.with_mask
        )
        if self.with_mask:
            results = self.predict_mask(feats, img_metas, results, rescale=rescale)
        return results


def _empty_detections(like: torch.Tensor) -> Instances:
    return Instances(
        bboxes=like.new_zeros(0, 4),
        scores=like.new_zeros(0),
        labels=torch.zeros(0, dtype=torch.long, device=like.device),
    )
