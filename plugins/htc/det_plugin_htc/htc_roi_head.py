"""``HybridTaskCascadeRoIHead``: Cascade's stages with interleaved box and mask branches, mask information
flow between the stages' mask heads and an optional semantic branch (Chen et al., Hybrid Task Cascade,
2019).

Numerics of the reference 2.x (on top of :class:`CascadeRoIHead`'s):

- semantic branch (optional): ``semantic_head`` (a :class:`FusedSemanticHead`) on all neck levels gives
  class logits (``loss_semantic_seg`` against ``gt_semantic_seg`` at the fusion level's scale) and a
  semantic feature map; ``semantic_roi_extractor`` pools it at the RoIs and the pooled features are
  added to the box features (adaptive-average pooled to their size when it differs, e.g. 14 -> 7) if
  ``"bbox" in semantic_fusion`` and to the mask features if ``"mask" in semantic_fusion``;
- training, stage ``i``: sample, box forward, ``s{i}.*`` box losses as Cascade; with ``interleaved``
  the stage's boxes are refined first (no gradients; gt boxes added as proposals dropped) and
  re-assigned and re-sampled with stage ``i``'s assigner and sampler (the gt added again), and the mask
  branch trains on those positives; the refined boxes are the next stage's proposals. Without
  ``interleaved`` the mask branch trains on the box branch's positives and the refinement follows, as
  in Cascade. With ``mask_info_flow`` stage ``i``'s mask head receives the mask features of heads
  ``0 .. i-1`` run in sequence on the same RoI features (with gradients);
- test: the cascade's box test (with the semantic fusion); the mask RoI features of the detected boxes
  are pooled once (the last stage's extractor, + semantic), every stage's mask head runs on them in
  order (passing its mask features on with ``mask_info_flow``), and the mask probabilities are the
  mean over the stages of ``sigmoid(logits)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from det_plugin_cascade.cascade_roi_head import CascadeRoIHead

from detcore.models.roi_heads.base_roi_head import proposal_boxes
from detcore.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead
from detcore.registry import build
from detcore.structures.instances import Instances

_FUSION_TARGETS = ("bbox", "mask")


class HybridTaskCascadeRoIHead(CascadeRoIHead):
    """HTC's RoI head.

    Args:
        num_stages, stage_loss_weights: as :class:`CascadeRoIHead` (3, ``[1, 0.5, 0.25]``).
        semantic_roi_extractor: extractor table pooling the semantic feature map (``featmap_strides``
            ``[8]``, RoIAlign 14); required with ``semantic_head``.
        semantic_head: a semantic head table (``FusedSemanticHead``), or ``None`` for no semantic branch.
        semantic_fusion: where the pooled semantic features are added: ``"bbox"`` and / or ``"mask"``.
        interleaved: train each stage's mask branch on the stage's refined, re-sampled boxes.
        mask_info_flow: feed every mask head the previous stages' mask features (stages after the
            first need ``HTCMaskHead`` with ``with_conv_res``).
        **kwargs: the :class:`CascadeRoIHead` arguments (extractors, heads, train_cfg, test_cfg).
    """

    component_kinds = {"semantic_roi_extractor": "roi_extractor", "semantic_head": "roi_head"}

    def __init__(
        self,
        num_stages: int,
        stage_loss_weights: Sequence[float],
        semantic_roi_extractor: Mapping[str, Any] | None = None,
        semantic_head: Mapping[str, Any] | None = None,
        semantic_fusion: Sequence[str] = ("bbox", "mask"),
        interleaved: bool = True,
        mask_info_flow: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_stages, stage_loss_weights, **kwargs)
        name = type(self).__name__
        if not self.with_bbox:
            raise ValueError(f"{name}: needs the bbox branch (bbox_roi_extractor and bbox_head)")
        unknown = [t for t in semantic_fusion if t not in _FUSION_TARGETS]
        if unknown:
            raise ValueError(f"{name}: semantic_fusion {unknown} not among {list(_FUSION_TARGETS)}")
        if (semantic_head is None) != (semantic_roi_extractor is None):
            raise ValueError(
                f"{name}: semantic_head and semantic_roi_extractor go together (give both or neither)"
            )
        if semantic_head is not None:
            self.semantic_roi_extractor = build(
                "roi_extractor", semantic_roi_extractor, where=f"{name}.semantic_roi_extractor"
            )
            self.semantic_head = build("roi_head", semantic_head, where=f"{name}.semantic_head")
        self.semantic_fusion = tuple(semantic_fusion)
        self.interleaved = bool(interleaved)
        self.mask_info_flow = bool(mask_info_flow)
        if self.with_mask and self.mask_info_flow:
            for i, head in enumerate(self.mask_head):
                if i > 0 and not getattr(head, "with_conv_res", False):
                    raise ValueError(
                        f"{name}: mask_info_flow needs mask_head.{i} to take the previous stage's mask "
                        f"features (an HTCMaskHead with with_conv_res = true), got {type(head).__name__}"
                    )

    @property
    def with_semantic(self) -> bool:
        return getattr(self, "semantic_head", None) is not None

    @property
    def loss_inputs(self) -> tuple[str, ...]:
        """Batch entries the detector passes to :meth:`loss`: ``gt_semantic_seg`` with the semantic branch."""
        return ("gt_semantic_seg",) if self.with_semantic else ()

    # -- forward pieces ---------------------------------------------------------------------------

    def semantic_roi_feats(
        self, semantic_feat: torch.Tensor | None, rois: torch.Tensor, size: Sequence[int], where: str
    ) -> torch.Tensor:
        """The semantic feature map ``(B, C, h, w)`` pooled at ``rois`` ``(K, 5)``, resized to ``size``
        by adaptive average pooling when the extractor's output size differs."""
        if semantic_feat is None:
            raise ValueError(
                f"{type(self).__name__}.{where}: the semantic branch needs the semantic feature map"
            )
        feats = self.semantic_roi_extractor([semantic_feat], rois)
        if tuple(feats.shape[-2:]) != tuple(size):
            feats = F.adaptive_avg_pool2d(feats, tuple(size))
        return feats

    def bbox_forward(
        self,
        stage: int,
        feats: Sequence[torch.Tensor],
        rois: torch.Tensor,
        semantic_feat: torch.Tensor | None = None,
        **forward_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Stage ``stage``'s box branch on RoIs ``(K, 5)`` (+ the pooled semantic features): ``cls_score``,
        ``bbox_pred``, ``bbox_feats``."""
        extractor = self.bbox_roi_extractor[stage]
        bbox_feats = extractor(feats[: extractor.num_inputs], rois)
        if self.with_semantic and "bbox" in self.semantic_fusion:
            bbox_feats = bbox_feats + self.semantic_roi_feats(
                semantic_feat, rois, bbox_feats.shape[-2:], "bbox_forward"
            )
        cls_score, bbox_pred = self.bbox_head[stage](bbox_feats)
        return {"cls_score": cls_score, "bbox_pred": bbox_pred, "bbox_feats": bbox_feats}

    def mask_features(
        self,
        stage: int,
        feats: Sequence[torch.Tensor],
        rois: torch.Tensor,
        semantic_feat: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stage ``stage``'s mask RoI features ``(K, C, 14, 14)`` (+ the pooled semantic features)."""
        extractor = self.mask_roi_extractor[stage]
        mask_feats = extractor(feats[: extractor.num_inputs], rois)
        if self.with_semantic and "mask" in self.semantic_fusion:
            mask_feats = mask_feats + self.semantic_roi_feats(
                semantic_feat, rois, mask_feats.shape[-2:], "mask_forward"
            )
        return mask_feats

    def mask_heads_forward(self, stage: int, mask_feats: torch.Tensor) -> torch.Tensor:
        """Stage ``stage``'s mask logits ``(K, C, M, M)`` on ``mask_feats``; with ``mask_info_flow`` heads
        ``0 .. stage - 1`` run first, each passing its mask features on."""
        head = self.mask_head[stage]
        if not self.mask_info_flow:
            return _logits(head, mask_feats)
        last_feat = None
        for j in range(stage):
            last_feat = self.mask_head[j](mask_feats, last_feat, return_logits=False)
        return head(mask_feats, last_feat, return_feat=False)

    def mask_forward(
        self,
        stage: int,
        feats: Sequence[torch.Tensor],
        rois: torch.Tensor,
        semantic_feat: torch.Tensor | None = None,
        **forward_kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Stage ``stage``'s mask logits ``{"mask_preds": (K, C, M, M)}`` at RoIs ``(K, 5)``."""
        mask_feats = self.mask_features(stage, feats, rois, semantic_feat)
        return {"mask_preds": self.mask_heads_forward(stage, mask_feats)}

    # -- training ---------------------------------------------------------------------------------

    def loss(  # type: ignore[override]
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
        gt_semantic_seg: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_semantic_seg`` (with the semantic branch) and ``s{i}.loss_cls``, ``s{i}.acc``,
        ``s{i}.loss_bbox``, ``s{i}.loss_mask`` of every stage.

        Args:
            feats: the neck's levels ``(B, C, h_l, w_l)``.
            proposals: per image ``Instances(bboxes (n_i, 4))`` (or tensors), in input-image pixels.
            gt_instances: per image ``bboxes``, ``labels`` (+ ``masks``).
            img_metas: per image meta dicts.
            gt_ignored_instances: per image ignored boxes, or ``None``.
            gt_semantic_seg: ``(B, 1, H_f, W_f)`` long class map at the semantic head's fusion level
                (255: ignored); required with the semantic branch.
        """
        name = type(self).__name__
        proposal_list = proposal_boxes(proposals, f"{name}.loss")
        losses: dict[str, torch.Tensor] = {}
        semantic_feat = None
        if self.with_semantic:
            if gt_semantic_seg is None:
                raise ValueError(
                    f"{name}: the semantic branch trains on 'gt_semantic_seg' (LoadAnnotations with_seg = "
                    "true and SegRescale in the pipeline)"
                )
            semantic_logits, semantic_feat = self.semantic_head(feats)
            losses["loss_semantic_seg"] = self.semantic_head.loss(semantic_logits, gt_semantic_seg)
        for i in range(self.num_stages):
            sampling_results = self.sample(i, proposal_list, gt_instances, gt_ignored_instances)
            bbox_results = self.bbox_loss(i, feats, sampling_results, semantic_feat=semantic_feat)
            self.add_stage_losses(losses, i, bbox_results["loss_bbox"])
            empty = bbox_results["cls_score"].numel() == 0
            refined = None
            if self.with_mask:
                if self.interleaved and not empty:
                    refined = self.refine(i, sampling_results, bbox_results, img_metas)
                    with torch.no_grad():
                        sampling_results = self.sample(i, refined, gt_instances, gt_ignored_instances)
                mask_losses = self.mask_loss(
                    i, feats, sampling_results, gt_instances, semantic_feat=semantic_feat
                )
                self.add_stage_losses(losses, i, mask_losses)
            if i < self.num_stages - 1:
                if empty:
                    break
                proposal_list = (
                    refined
                    if refined is not None
                    else self.refine(i, sampling_results, bbox_results, img_metas)
                )
        return losses

    # -- inference --------------------------------------------------------------------------------

    def predict_mask_probs(
        self,
        feats: Sequence[torch.Tensor],
        mask_rois: torch.Tensor,
        semantic_feat: torch.Tensor | None = None,
        **forward_kwargs: Any,
    ) -> torch.Tensor:
        """Mask probabilities ``(K, C, M, M)`` at RoIs ``(K, 5)``: the RoI features pooled once (the last
        stage's extractor), the stages' heads in order (mask information flow), the mean of their
        ``sigmoid(logits)``."""
        mask_feats = self.mask_features(self.num_stages - 1, feats, mask_rois, semantic_feat)
        probs = []
        last_feat = None
        for head in self.mask_head:
            if self.mask_info_flow:
                logits, last_feat = head(mask_feats, last_feat)
            else:
                logits = _logits(head, mask_feats)
            probs.append(logits.sigmoid())
        return torch.stack(probs).mean(0)

    def predict(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        img_metas: Sequence[dict],
        rescale: bool = False,
        **forward_kwargs: Any,
    ) -> list[Instances]:
        """One ``Instances`` per image (``bboxes``, ``scores``, ``labels``, + ``masks``); with the semantic
        branch its feature map is computed once and fused into every stage."""
        if self.with_semantic:
            forward_kwargs["semantic_feat"] = self.semantic_head(feats)[1]
        return super().predict(feats, proposals, img_metas, rescale=rescale, **forward_kwargs)


def _logits(head: Any, mask_feats: torch.Tensor) -> torch.Tensor:
    """Mask logits of an HTC or plain FCN mask head without information flow."""
    if isinstance(head, FCNMaskHead) and hasattr(head, "with_conv_res"):
        return head(mask_feats, return_feat=False)
    return head(mask_feats)


__all__ = ["HybridTaskCascadeRoIHead"]
