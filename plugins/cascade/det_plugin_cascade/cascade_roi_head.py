"""``CascadeRoIHead``: a sequence of box (and mask) heads, each trained on the previous one's refined
boxes with a stricter IoU threshold (Cai and Vasconcelos, Cascade R-CNN, 2018).

Numerics follow the reference 2.x:

- training, stage ``i``: the current proposals are assigned and sampled with ``train_cfg[i]``'s
  assigner and sampler (the gt boxes added as proposals), the sampled RoIs go through stage ``i``'s
  extractor and box head, targets are encoded with stage ``i``'s coder (its stds); the losses are
  named ``s{i}.{name}`` and every one whose name contains ``loss`` is multiplied by
  ``stage_loss_weights[i]`` (``s{i}.acc`` is not); the mask branch of stage ``i`` trains on the
  stage's positives (``s{i}.loss_mask``, weighted alike); then, except after the last stage and
  without gradients, each sampled RoI is regressed by its label target (the argmax of the foreground
  scores for negatives) and the gt boxes that were added as proposals are dropped: the next stage's
  proposals;
- test: every stage classifies and regresses the current RoIs; between stages each RoI is moved by
  the deltas of its argmax foreground class; the final class scores are the mean of the stages'
  logits (before the softmax), the boxes come from the last stage's deltas on its input RoIs,
  decoded by the last box head (softmax, decode, rescale, ``multiclass_nms``); masks (Cascade Mask
  R-CNN): every stage's mask head predicts on the detected boxes, the final probabilities are the
  mean over stages of ``sigmoid(logits)``, pasted at ``mask_thr_binary`` without a second sigmoid.

Extension points for subclasses (HTC): :meth:`bbox_forward`, :meth:`mask_forward`,
:meth:`bbox_loss`, :meth:`mask_loss`, :meth:`refine`, :meth:`sample`, :meth:`predict_mask_probs`.
``loss`` and ``predict`` pass their ``**forward_kwargs`` on to the forward methods (e.g. a semantic
feature map).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.dense_heads.base_dense_head import unpack_gt_instances
from detcore.models.init import ModuleList
from detcore.models.roi_heads.base_roi_head import BaseRoIHead, proposal_boxes
from detcore.models.roi_heads.standard_roi_head import StandardRoIHead
from detcore.models.task_utils.sampling_result import SamplingResult
from detcore.models.utils import bbox2roi
from detcore.registry import build
from detcore.settings import NMS_SETTINGS, REQUIRED, Key, PerStage, Settings, checked
from detcore.structures.instances import Instances

#: one stage's ``train_cfg.rcnn`` table: what StandardRoIHead reads (assigner, sampler) plus what that
#: stage's box and mask heads declare (pos_weight, mask_size, ...)
STAGE_TRAIN_SETTINGS = StandardRoIHead.train_settings

#: ``test_cfg.rcnn``: one table for the final detections (read by the last box and mask heads)
TEST_SETTINGS = Settings(
    score_thr=Key(float, REQUIRED, doc="drop detections scoring below"),
    nms=Key(NMS_SETTINGS, REQUIRED, doc="the per-class NMS"),
    max_per_img=Key(int, -1, doc="keep at most this many detections per image"),
    mask_thr_binary=Key(float, 0.5, doc="binarise the pasted mask probabilities"),
)


def _per_stage(value: Any, num_stages: int, what: str, where: str) -> list[Any]:
    """``value`` as a list of ``num_stages`` items: one table is used for every stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f"{where}: {what} has {len(value)} entries for {num_stages} stages")
        return list(value)
    return [value] * num_stages


class CascadeRoIHead(BaseRoIHead):
    """``num_stages`` box heads (and mask heads) applied in sequence.

    Args:
        num_stages: number of stages (3).
        stage_loss_weights: one loss weight per stage (``[1, 0.5, 0.25]``).
        bbox_roi_extractor / mask_roi_extractor: one table for every stage, or a list of one per stage;
            without ``mask_roi_extractor`` the mask heads read the box extractors' features.
        bbox_head / mask_head: one table for every stage, or a list of one per stage (the reference's
            box heads differ by their coder's stds); built as ``bbox_head.{i}`` / ``mask_head.{i}``.
        train_cfg: the detector's ``train_cfg.rcnn``: a list of one table per stage (assigner,
            sampler, pos_weight, mask_size); one table is used for every stage.
        test_cfg: the detector's ``test_cfg.rcnn`` (score_thr, nms, max_per_img, mask_thr_binary).
        init_cfg: weight-init table(s).
    """

    train_settings = PerStage(STAGE_TRAIN_SETTINGS, single_ok=True)
    test_settings = TEST_SETTINGS

    def __init__(
        self,
        num_stages: int,
        stage_loss_weights: Sequence[float],
        bbox_roi_extractor: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        bbox_head: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        mask_roi_extractor: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        mask_head: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        shared_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        name = type(self).__name__
        if int(num_stages) < 1:
            raise ValueError(f"{name}: num_stages must be >= 1, got {num_stages}")
        if len(stage_loss_weights) != int(num_stages):
            raise ValueError(
                f"{name}: stage_loss_weights has {len(stage_loss_weights)} entries for {num_stages} stages"
            )
        if shared_head is not None:
            raise ValueError(f"{name}: a shared_head is not supported (the reference's cascade ignores it)")
        self.num_stages = int(num_stages)
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]
        if isinstance(train_cfg, Mapping):
            train_cfg = [train_cfg] * self.num_stages
        elif train_cfg is not None and len(train_cfg) != self.num_stages:
            raise ValueError(
                f"{name}: train_cfg (the detector's train_cfg.rcnn) has {len(train_cfg)} tables for "
                f"{self.num_stages} stages"
            )
        super().__init__(
            bbox_roi_extractor=bbox_roi_extractor,
            bbox_head=bbox_head,
            mask_roi_extractor=mask_roi_extractor,
            mask_head=mask_head,
            test_cfg=test_cfg,
            init_cfg=init_cfg,
        )
        # the per-stage list is kept here (the base class takes one table)
        self.train_cfg = checked(self, "train_cfg", train_cfg, where=name)
        self.init_assigner_sampler()

    # -- building ---------------------------------------------------------------------------------

    def init_bbox_head(self, bbox_roi_extractor: Any, bbox_head: Any) -> None:
        name = type(self).__name__
        if bbox_roi_extractor is None:
            raise ValueError(f"{name}: a bbox_head needs a bbox_roi_extractor table")
        extractors = _per_stage(bbox_roi_extractor, self.num_stages, "bbox_roi_extractor", name)
        heads = _per_stage(bbox_head, self.num_stages, "bbox_head", name)
        self.bbox_roi_extractor = ModuleList(
            [
                build("roi_extractor", e, where=f"{name}.bbox_roi_extractor.{i}")
                for i, e in enumerate(extractors)
            ]
        )
        self.bbox_head = ModuleList(
            [build("roi_head", h, where=f"{name}.bbox_head.{i}") for i, h in enumerate(heads)]
        )

    def init_mask_head(self, mask_roi_extractor: Any, mask_head: Any) -> None:
        name = type(self).__name__
        heads = _per_stage(mask_head, self.num_stages, "mask_head", name)
        self.mask_head = ModuleList(
            [build("roi_head", h, where=f"{name}.mask_head.{i}") for i, h in enumerate(heads)]
        )
        if mask_roi_extractor is not None:
            extractors = _per_stage(mask_roi_extractor, self.num_stages, "mask_roi_extractor", name)
            self.mask_roi_extractor = ModuleList(
                [
                    build("roi_extractor", e, where=f"{name}.mask_roi_extractor.{i}")
                    for i, e in enumerate(extractors)
                ]
            )
            self.share_roi_extractor = False
        else:
            if not self.with_bbox:
                raise ValueError(f"{name}: a mask head without mask_roi_extractor needs the bbox branch")
            self.mask_roi_extractor = self.bbox_roi_extractor
            self.share_roi_extractor = True

    def init_assigner_sampler(self) -> None:
        self.bbox_assigner: list[Any] = []
        self.bbox_sampler: list[Any] = []
        if not self.train_cfg:
            return
        for i, cfg in enumerate(self.train_cfg):
            where = f"{type(self).__name__}.train_cfg.{i}"
            for key in ("assigner", "sampler"):
                if key not in cfg:
                    raise ValueError(
                        f"{where}: needs an '{key}' table (the detector's train_cfg.rcnn.{i}.{key})"
                    )
            self.bbox_assigner.append(build("task_util", cfg["assigner"], where=f"{where}.assigner"))
            self.bbox_sampler.append(build("task_util", cfg["sampler"], where=f"{where}.sampler"))

    # -- forward pieces ---------------------------------------------------------------------------

    def bbox_forward(
        self, stage: int, feats: Sequence[torch.Tensor], rois: torch.Tensor, **forward_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Stage ``stage``'s box branch on RoIs ``(K, 5)``: ``cls_score`` ``(K, C + 1)``, ``bbox_pred``
        ``(K, 4 | 4C)``, ``bbox_feats`` ``(K, C', 7, 7)``."""
        extractor = self.bbox_roi_extractor[stage]
        bbox_feats = extractor(feats[: extractor.num_inputs], rois)
        cls_score, bbox_pred = self.bbox_head[stage](bbox_feats)
        return {"cls_score": cls_score, "bbox_pred": bbox_pred, "bbox_feats": bbox_feats}

    def mask_forward(
        self, stage: int, feats: Sequence[torch.Tensor], rois: torch.Tensor, **forward_kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Stage ``stage``'s mask branch on RoIs ``(K, 5)``: ``mask_preds`` logits ``(K, C, M, M)``."""
        extractor = self.mask_roi_extractor[stage]
        mask_feats = extractor(feats[: extractor.num_inputs], rois)
        return {"mask_preds": self.mask_head[stage](mask_feats)}

    # -- training ---------------------------------------------------------------------------------

    def sample(
        self,
        stage: int,
        proposals: Sequence[torch.Tensor],
        gt_instances: Sequence[Instances],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> list[SamplingResult]:
        """Assign and sample each image's boxes ``(n_i, 4)`` with stage ``stage``'s assigner/sampler."""
        name = type(self).__name__
        if not self.bbox_assigner:
            raise ValueError(f"{name}: training needs a train_cfg (the detector's train_cfg.rcnn)")
        if len(proposals) != len(gt_instances):
            raise ValueError(f"{name}: {len(proposals)} proposal sets for {len(gt_instances)} images")
        gt_bboxes, gt_labels, gt_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        gt_ignore = gt_ignore if gt_ignore is not None else [None] * len(proposals)
        assigner, sampler = self.bbox_assigner[stage], self.bbox_sampler[stage]
        results = []
        for i, props in enumerate(proposals):
            assign_result = assigner.assign(props, gt_bboxes[i], gt_ignore[i], gt_labels[i])
            results.append(
                sampler.sample(
                    assign_result,
                    props,
                    gt_bboxes[i],
                    gt_labels[i],
                    background_label=self.bbox_head[stage].num_classes,
                )
            )
        return results

    def bbox_loss(
        self,
        stage: int,
        feats: Sequence[torch.Tensor],
        sampling_results: Sequence[SamplingResult],
        **forward_kwargs: Any,
    ) -> dict[str, Any]:
        """Box forward of the sampled RoIs and stage ``stage``'s (unweighted) losses: the
        :meth:`bbox_forward` outputs plus ``rois``, ``loss_bbox`` (a dict) and ``bbox_targets``."""
        rois = bbox2roi([res.bboxes for res in sampling_results])
        results: dict[str, Any] = self.bbox_forward(stage, feats, rois, **forward_kwargs)
        out = self.bbox_head[stage].loss_and_target(
            results["cls_score"], results["bbox_pred"], rois, sampling_results, self.train_cfg[stage]
        )
        results.update(rois=rois, loss_bbox=out["loss_bbox"], bbox_targets=out["bbox_targets"])
        return results

    def mask_loss(
        self,
        stage: int,
        feats: Sequence[torch.Tensor],
        sampling_results: Sequence[SamplingResult],
        gt_instances: Sequence[Instances],
        **forward_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Stage ``stage``'s (unweighted) mask losses on its positives: ``{"loss_mask": Tensor}``."""
        pos_rois = bbox2roi([res.pos_bboxes for res in sampling_results])
        mask_preds = self.mask_forward(stage, feats, pos_rois, **forward_kwargs)["mask_preds"]
        out = self.mask_head[stage].loss_and_target(
            mask_preds, sampling_results, gt_instances, self.train_cfg[stage]
        )
        return {"loss_mask": out["loss_mask"]}

    @torch.no_grad()
    def refine(
        self,
        stage: int,
        sampling_results: Sequence[SamplingResult],
        bbox_results: Mapping[str, Any],
        img_metas: Sequence[dict],
    ) -> list[torch.Tensor]:
        """The next stage's proposals per image ``(n_i, 4)``: every sampled RoI regressed by its label
        target (negatives: the argmax of the foreground scores), the gt boxes added as proposals
        dropped."""
        head = self.bbox_head[stage]
        roi_labels = bbox_results["bbox_targets"][0]
        cls_score = bbox_results["cls_score"]
        roi_labels = torch.where(roi_labels == head.num_classes, cls_score[:, :-1].argmax(1), roi_labels)
        pos_is_gts = [res.pos_is_gt for res in sampling_results]
        return head.refine_bboxes(
            bbox_results["rois"], roi_labels, bbox_results["bbox_pred"], pos_is_gts, img_metas
        )

    def add_stage_losses(
        self, losses: dict[str, torch.Tensor], stage: int, stage_losses: Mapping[str, torch.Tensor]
    ) -> None:
        """``losses[f"s{stage}.{name}"]``, multiplied by the stage's weight where ``name`` has ``loss``."""
        weight = self.stage_loss_weights[stage]
        for key, value in stage_losses.items():
            losses[f"s{stage}.{key}"] = value * weight if "loss" in key else value

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
        **forward_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """``s{i}.loss_cls``, ``s{i}.acc``, ``s{i}.loss_bbox`` (+ ``s{i}.loss_mask``) of every stage.

        Args:
            feats: the neck's levels ``(B, C, h_l, w_l)``.
            proposals: per image ``Instances(bboxes (n_i, 4))`` (or ``(n_i, 4 | 5)`` tensors), detached,
                in input-image pixels.
            gt_instances: per image ``bboxes`` ``(N_i, 4)``, ``labels`` ``(N_i,)`` (+ ``masks``).
            img_metas: per image meta dicts (``img_shape`` clips the refined boxes).
            gt_ignored_instances: per image ignored boxes, or ``None``.
        """
        proposal_list = proposal_boxes(proposals, f"{type(self).__name__}.loss")
        losses: dict[str, torch.Tensor] = {}
        for i in range(self.num_stages):
            sampling_results = self.sample(i, proposal_list, gt_instances, gt_ignored_instances)
            bbox_results = self.bbox_loss(i, feats, sampling_results, **forward_kwargs)
            self.add_stage_losses(losses, i, bbox_results["loss_bbox"])
            if self.with_mask:
                self.add_stage_losses(
                    losses, i, self.mask_loss(i, feats, sampling_results, gt_instances, **forward_kwargs)
                )
            if i < self.num_stages - 1:
                if bbox_results["cls_score"].numel() == 0:
                    break
                proposal_list = self.refine(i, sampling_results, bbox_results, img_metas)
        return losses

    # -- inference --------------------------------------------------------------------------------

    def predict_bbox(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        proposals: Sequence[Instances | torch.Tensor],
        rescale: bool = False,
        **forward_kwargs: Any,
    ) -> list[Instances]:
        """Box detections per image (``bboxes (K, 4)``, ``scores (K,)``, ``labels (K,)``) from the mean
        of the stages' class logits and the last stage's deltas."""
        boxes = proposal_boxes(proposals, f"{type(self).__name__}.predict")
        counts = [len(b) for b in boxes]
        rois = bbox2roi(boxes)
        if rois.shape[0] == 0:
            return [_empty_detections(rois) for _ in img_metas]
        stage_scores: list[torch.Tensor] = []
        bbox_pred: torch.Tensor | None = None
        for i in range(self.num_stages):
            out = self.bbox_forward(i, feats, rois, **forward_kwargs)
            cls_score, bbox_pred = out["cls_score"], out["bbox_pred"]
            stage_scores.append(cls_score)
            if i < self.num_stages - 1:
                rois = self.regress_rois(i, rois, cls_score, bbox_pred, counts, img_metas)
        cls_score = torch.stack(stage_scores).mean(0)
        return self.bbox_head[-1].predict_by_feat(
            rois.split(counts, 0),
            cls_score.split(counts, 0),
            bbox_pred.split(counts, 0),
            img_metas,
            self.test_cfg,
            rescale=rescale,
        )

    def regress_rois(
        self,
        stage: int,
        rois: torch.Tensor,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        counts: Sequence[int],
        img_metas: Sequence[dict],
    ) -> torch.Tensor:
        """Test-time refinement: each RoI ``(K, 5)`` moved by the deltas of its argmax foreground class,
        image by image (clipped to that image's ``img_shape``)."""
        head = self.bbox_head[stage]
        refined = []
        splits = (t.split(counts, 0) for t in (rois, cls_score, bbox_pred))
        for r, score, pred, meta in zip(*splits, img_metas):
            if r.shape[0] > 0:
                refined.append(head.regress_by_class(r, score[:, :-1].argmax(dim=1), pred, meta))
        return torch.cat(refined)

    def predict_mask_probs(
        self, feats: Sequence[torch.Tensor], mask_rois: torch.Tensor, **forward_kwargs: Any
    ) -> torch.Tensor:
        """Mask probabilities ``(K, C, M, M)`` at RoIs ``(K, 5)``: the mean over stages of the sigmoid
        of each stage's mask logits."""
        probs = [
            self.mask_forward(i, feats, mask_rois, **forward_kwargs)["mask_preds"].sigmoid()
            for i in range(self.num_stages)
        ]
        return torch.stack(probs).mean(0)

    def predict_mask(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        results: list[Instances],
        rescale: bool = False,
        **forward_kwargs: Any,
    ) -> list[Instances]:
        """Add ``masks`` to box detections in input-image coordinates (the mask head rescales them)."""
        bboxes = [r.bboxes for r in results]
        probs = self.predict_mask_probs(feats, bbox2roi(bboxes), **forward_kwargs)
        probs_list = list(probs.split([len(b) for b in bboxes], 0))
        return self.mask_head[-1].predict_by_feat(
            probs_list, results, img_metas, self.test_cfg, rescale=rescale, activate_map=True
        )

    def predict(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        img_metas: Sequence[dict],
        rescale: bool = False,
        **forward_kwargs: Any,
    ) -> list[Instances]:
        """One ``Instances`` per image (``bboxes``, ``scores``, ``labels``, + ``masks`` with mask heads);
        original-image coordinates with ``rescale``."""
        name = type(self).__name__
        if not self.with_bbox:
            raise ValueError(f"{name}: prediction needs the bbox branch")
        if self.test_cfg is None:
            raise ValueError(f"{name}: no test_cfg (the detector's test_cfg.rcnn)")
        results = self.predict_bbox(
            feats, img_metas, proposals, rescale=rescale and not self.with_mask, **forward_kwargs
        )
        if self.with_mask:
            results = self.predict_mask(feats, img_metas, results, rescale=rescale, **forward_kwargs)
        return results


def _empty_detections(like: torch.Tensor) -> Instances:
    return Instances(
        bboxes=like.new_zeros(0, 4),
        scores=like.new_zeros(0),
        labels=torch.zeros(0, dtype=torch.long, device=like.device),
    )


__all__ = ["STAGE_TRAIN_SETTINGS", "TEST_SETTINGS", "CascadeRoIHead"]
