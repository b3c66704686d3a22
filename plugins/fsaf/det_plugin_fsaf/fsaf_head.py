"""``FSAFHead``: FSAF's anchor-free branch on RetinaNet's towers, trained with online feature selection.

The layers are RetinaHead's (``cls_convs``, ``reg_convs``, ``retina_cls``, ``retina_reg``) with one
"anchor" per location: a square of side ``stride`` centred on the location, which only serves as the
location's centre and scale. ``retina_reg`` predicts ``(top, bottom, left, right)`` distances to the
object's sides in units of ``normalizer * stride`` (:class:`~det_plugin_fsaf.TBLRBBoxCoder`), through a
ReLU (distances are not negative); its bias starts at 0.25.

Training (the reference's ``FSAFHead.loss``):

1. every location of every level is assigned by ``train_cfg.assigner``
   (:class:`~det_plugin_fsaf.CenterRegionAssigner`: effective region positives, shadowed classes
   ignored), so an instance starts positive at *each* level where its centre region has locations;
2. per level and location the focal loss (summed over classes) and the IoU loss of the decoded box
   (``reg_decoded_bbox``) are computed unreduced (``reduction = "none"``);
3. **online feature selection**: for each instance and level the mean over its positive locations of
   focal + IoU loss; the instance is kept at the level where it is smallest (levels where it has no
   positive location count 1e6) - paper Sec. 3.4;
4. **loss reweighting**: at the other levels the instance's locations lose their regression weight and
   the weight of the instance's class (they stay negatives of the other classes);
5. both losses summed per level and divided by the number of remaining positives (or of negatives
   when there is none).

``neighbour_ignore_scale`` (off by default, as in the reference) adds the paper's ignoring regions on
the levels next to an instance's selected one: there the priors whose centres lie in the instance's
box shrunk to that scale (the paper's 0.5) drop the loss of the instance's class (unless they are a
final positive of that class).

Losses: ``loss_cls`` and ``loss_bbox`` (per level), ``num_pos`` (positives per image after selection)
and ``pos_recall`` (percent of the final positives whose top class is right; with ``score_threshold``
also above it) - the reference's names. ``num_pos`` and ``pos_recall`` are logged, not trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from det_plugin_retinanet.retina_head import RetinaHead

from detcore.models.dense_heads.base_dense_head import unpack_gt_instances
from detcore.models.losses.accuracy import accuracy
from detcore.models.utils import anchor_inside_flags, images_to_levels, multi_apply, unmap
from detcore.structures.instances import Instances

#: the loss given to an (instance, level) pair without positive locations, so that it is never selected
NO_POSITIVE_LOSS = 1e6


class FSAFHead(RetinaHead):
    """FSAF head (anchor-free branch).

    Args:
        num_classes / in_channels / stacked_convs / feat_channels: as :class:`RetinaHead`.
        score_threshold: a final positive counts as recalled in ``pos_recall`` only above this score.
        neighbour_ignore_scale: ``None`` (the reference) or the scale of the ignoring region applied on
            the levels adjacent to each instance's selected level (the paper: 0.5).
        anchor_generator: one square of side ``stride`` per location (octave base scale 1, ratio 1).
        bbox_coder: :class:`TBLRBBoxCoder` (``normalizer`` 4).
        reg_decoded_bbox: regress decoded boxes (the IoU loss needs them); must stay True.
        loss_cls / loss_bbox: focal loss and IoU loss, both with ``reduction = "none"`` (the head
            reduces them after feature selection).
        init_cfg: Normal(std 0.01) on every Conv2d; ``retina_cls`` bias from the prior 0.01,
            ``retina_reg`` bias 0.25 (positive distances: no zero-area box at the start).
        **kwargs: the remaining :class:`RetinaHead` arguments (train_cfg, test_cfg, ...).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        score_threshold: float | None = None,
        neighbour_ignore_scale: float | None = None,
        anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator", "octave_base_scale": 1, "scales_per_octave": 1, "ratios": [1.0],
            "strides": [8, 16, 32, 64, 128],
        },
        bbox_coder: Mapping[str, Any] = {"type": "TBLRBBoxCoder", "normalizer": 4.0},  # noqa: B006
        reg_decoded_bbox: bool = True,
        loss_cls: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0,
            "reduction": "none",
        },
        loss_bbox: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "IoULoss", "eps": 1e-6, "loss_weight": 1.0, "reduction": "none",
        },
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.01,
            "override": [{"type": "Normal", "name": "retina_cls", "std": 0.01, "bias_prob": 0.01},
                         {"type": "Normal", "name": "retina_reg", "std": 0.01, "bias": 0.25}],
        },
        **kwargs: Any,
    ) -> None:
        if not reg_decoded_bbox:
            raise ValueError("FSAFHead: reg_decoded_bbox must be True (the IoU loss compares decoded boxes)")
        super().__init__(
            num_classes, in_channels, anchor_generator=anchor_generator, bbox_coder=bbox_coder,
            reg_decoded_bbox=reg_decoded_bbox, loss_cls=loss_cls, loss_bbox=loss_bbox, init_cfg=init_cfg,
            **kwargs,
        )
        if self.num_base_priors != 1:
            raise ValueError(
                f"FSAFHead: the anchor-free branch has one prior per location, the anchor generator gives "
                f"{self.num_base_priors} (use octave_base_scale 1, scales_per_octave 1, ratios [1.0])"
            )
        for name in ("loss_cls", "loss_bbox"):
            if getattr(self, name).reduction != "none":
                raise ValueError(
                    f"FSAFHead: {name} needs reduction = 'none' (feature selection reduces it), "
                    f"got {getattr(self, name).reduction!r}"
                )
        if not self.use_sigmoid_cls:
            raise ValueError("FSAFHead: needs a sigmoid classification loss (FocalLoss)")
        self.score_threshold = score_threshold
        if neighbour_ignore_scale is not None and not 0 < neighbour_ignore_scale <= 1:
            raise ValueError(
                f"FSAFHead: neighbour_ignore_scale must be in (0, 1], got {neighbour_ignore_scale}"
            )
        self.neighbour_ignore_scale = neighbour_ignore_scale

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level ``(B, C, h, w)`` -> ``cls_score`` ``(B, num_classes, h, w)`` and non-negative
        normalised distances ``bbox_pred`` ``(B, 4, h, w)`` (top, bottom, left, right)."""
        cls_score, bbox_pred = super().forward_single(x)
        return cls_score, self.relu(bbox_pred)

    # -- targets ----------------------------------------------------------------------------------

    def _get_targets_single(
        self,
        flat_anchors: torch.Tensor,
        valid_flags: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None,
        gt_labels: torch.Tensor | None,
        img_meta: Mapping[str, Any],
        label_channels: int = 1,
        unmap_outputs: bool = True,
    ) -> tuple:
        """Targets of one image over its priors ``(N, 4)``: as :meth:`AnchorHead._get_targets_single`,
        but ``label_weights`` is ``(N, label_channels)`` with the shadowed (prior, class) pairs at 0, and
        an 8th output ``pos_gt_inds`` ``(N,)``: the gt (0-based) each prior is positive for, -1 if none."""
        inside = anchor_inside_flags(flat_anchors, valid_flags, tuple(img_meta["img_shape"][:2]),
                                     self.train_cfg.get("allowed_border", -1))
        if not inside.any():
            return (None,) * 8
        anchors = flat_anchors[inside]
        assign_result = self.assigner.assign(anchors, gt_bboxes, gt_bboxes_ignore,
                                             None if self.sampling else gt_labels)
        sampling_result = self.sampler.sample(assign_result, anchors, gt_bboxes)

        n = anchors.size(0)
        bbox_targets = torch.zeros_like(anchors)
        bbox_weights = torch.zeros_like(anchors)
        labels = anchors.new_full((n,), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros((n, label_channels))
        pos_gt_inds = anchors.new_full((n,), -1, dtype=torch.long)
        pos_inds, neg_inds = sampling_result.pos_inds, sampling_result.neg_inds
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = sampling_result.pos_gt_bboxes.to(bbox_targets.dtype)
            bbox_weights[pos_inds] = 1.0
            pos_gt_inds[pos_inds] = sampling_result.pos_assigned_gt_inds
            labels[pos_inds] = 0 if gt_labels is None else gt_labels[sampling_result.pos_assigned_gt_inds]
            pos_weight = self.train_cfg.get("pos_weight", -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else float(pos_weight)
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0
        shadowed = assign_result.get_extra_property("shadowed_labels")
        if shadowed is not None and shadowed.numel():
            if shadowed.dim() == 2:  # (prior, class) pairs: ignore that class only
                prior_idx, cls = shadowed[:, 0], shadowed[:, 1]
                if (labels[prior_idx] == cls).any():
                    raise RuntimeError("FSAFHead: a prior is both positive and ignored for the same class")
                label_weights[prior_idx, cls] = 0
            else:
                label_weights[shadowed] = 0

        if unmap_outputs:
            total = flat_anchors.size(0)
            labels = unmap(labels, total, inside, fill=self.num_classes)
            label_weights = unmap(label_weights, total, inside)
            bbox_targets = unmap(bbox_targets, total, inside)
            bbox_weights = unmap(bbox_weights, total, inside)
            pos_gt_inds = unmap(pos_gt_inds, total, inside, fill=-1)
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds, sampling_result,
                pos_gt_inds)

    # -- losses -----------------------------------------------------------------------------------

    def loss_by_feat(
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, Any]:
        """``loss_cls`` / ``loss_bbox`` (lists over levels), ``num_pos`` and ``pos_recall`` of the
        head's outputs ``(B, C, h, w)`` / ``(B, 4, h, w)`` per level (see the module doc)."""
        name = type(self).__name__
        if self.train_cfg is None:
            raise ValueError(f"{name}: computing losses needs a train_cfg (assigner, ...)")
        # a (near) zero-area box has no IoU gradient
        bbox_preds = [pred.clamp(min=1e-4) for pred in bbox_preds]
        gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        featmap_sizes = [tuple(score.shape[-2:]) for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ValueError(f"{name}: {len(featmap_sizes)} feature levels but the anchor generator has "
                             f"{self.prior_generator.num_levels}")
        device = cls_scores[0].device
        batch_size = len(img_metas)
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, img_metas, device=device)
        targets = self.get_targets(
            anchor_list, valid_flag_list, gt_bboxes, img_metas, gt_bboxes_ignore_list=gt_bboxes_ignore,
            gt_labels_list=gt_labels, label_channels=self.cls_out_channels,
        )
        if targets is None:
            raise ValueError(f"{name}: an image of the batch has no prior inside it "
                             f"(img_shapes {[tuple(m['img_shape']) for m in img_metas]})")
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos,
         num_total_neg, pos_gt_inds_list) = targets
        num_level_anchors = [a.size(0) for a in anchor_list[0]]
        all_anchor_list = images_to_levels([torch.cat(a) for a in anchor_list], num_level_anchors)
        avg_factor = num_total_pos + num_total_neg if self.sampling else num_total_pos
        # unreduced: (B * n_l, C) focal terms and (B * n_l,) IoU losses per level
        losses_cls, losses_bbox = multi_apply(
            self.loss_by_feat_single, cls_scores, bbox_preds, all_anchor_list, labels_list,
            label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor=avg_factor,
        )

        # gt indices of the whole batch: image j's gts follow those of images 0..j-1
        num_gts = [len(labels) for labels in gt_labels]
        offsets = torch.tensor([0] + num_gts[:-1], device=device).cumsum(0).view(-1, 1)
        batch_gt_inds = [torch.where(inds >= 0, inds + offsets, inds).flatten() for inds in pos_gt_inds_list]
        flat_labels = [labels.flatten() for labels in labels_list]
        total_gts = sum(num_gts)
        with torch.no_grad():
            level_losses = torch.stack([
                self.collect_loss_level_single(c, b, inds, total_gts)
                for c, b, inds in zip(losses_cls, losses_bbox, batch_gt_inds)
            ]) if losses_cls else torch.zeros(0, total_gts, device=device)
            min_levels = level_losses.argmin(dim=0) if level_losses.numel() else \
                torch.zeros(total_gts, dtype=torch.long, device=device)

        num_levels = len(losses_cls)
        if self.neighbour_ignore_scale is None:
            neighbour_ignored = [None] * num_levels
        else:
            neighbour_ignored = [
                self.neighbour_ignored_pairs(priors[0], gt_bboxes, gt_labels, min_levels, level)
                for level, priors in enumerate(all_anchor_list)
            ]
        losses_cls, losses_bbox, pos_flags = multi_apply(
            self.reweight_loss_single, losses_cls, losses_bbox, batch_gt_inds, flat_labels,
            list(range(num_levels)), neighbour_ignored, min_levels=min_levels,
        )
        num_pos = torch.cat(pos_flags).sum().float()
        pos_recall = self.calculate_pos_recall(cls_scores, flat_labels, pos_flags)
        factor = num_pos if num_pos > 0 else num_pos + float(num_total_neg)
        return {
            "loss_cls": [loss / factor for loss in losses_cls],
            "loss_bbox": [loss / factor for loss in losses_bbox],
            "num_pos": num_pos / batch_size,
            "pos_recall": pos_recall,
        }

    @staticmethod
    def collect_loss_level_single(
        cls_loss: torch.Tensor, reg_loss: torch.Tensor, assigned_gt_inds: torch.Tensor, num_gts: int
    ) -> torch.Tensor:
        """One level's ``(num_gts,)`` mean loss per gt over the priors positive for it.

        ``cls_loss`` ``(n, C)`` (summed over classes) or ``(n,)``, ``reg_loss`` ``(n,)`` or ``(n, 4)``
        (summed), ``assigned_gt_inds`` ``(n,)`` (-1: none). A gt without positives here gets 1e6."""
        if cls_loss.dim() == 2:
            cls_loss = cls_loss.sum(dim=1)
        if reg_loss.dim() == 2:
            reg_loss = reg_loss.sum(dim=1)
        loss = cls_loss + reg_loss
        if loss.numel() != assigned_gt_inds.numel():
            raise ValueError(f"collect_loss_level_single: {loss.numel()} losses for "
                             f"{assigned_gt_inds.numel()} assignments")
        pos = assigned_gt_inds >= 0
        inds = assigned_gt_inds[pos]
        sums = loss.new_zeros(num_gts).index_add_(0, inds, loss[pos].to(loss.dtype))
        counts = torch.bincount(inds, minlength=num_gts).to(loss.dtype)
        missing = loss.new_full((num_gts,), NO_POSITIVE_LOSS)
        return torch.where(counts > 0, sums / counts.clamp(min=1), missing)

    def neighbour_ignored_pairs(
        self,
        priors: torch.Tensor,
        gt_bboxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        min_levels: torch.Tensor,
        level: int,
    ) -> torch.Tensor:
        """``(m, 2)`` pairs ``(batch prior index, class)`` of ``level`` (priors ``(n, 4)``, the same for
        every image) lying in the ignoring region (``neighbour_ignore_scale``) of an instance whose
        selected level is ``level - 1`` or ``level + 1``; batch prior index = image * n + prior."""
        from det_plugin_fsaf.center_region_assigner import points_in_boxes, scale_boxes

        centres = (priors[:, :2] + priors[:, 2:]) / 2
        pairs, start = [], 0
        for image, (boxes, labels) in enumerate(zip(gt_bboxes, gt_labels)):
            k = len(labels)
            near = (min_levels[start:start + k] - level).abs() == 1
            start += k
            if not near.any():
                continue
            region = scale_boxes(boxes[near].to(centres.dtype), float(self.neighbour_ignore_scale))
            prior_idx, gt_idx = points_in_boxes(centres, region).nonzero(as_tuple=True)
            pairs.append(torch.stack([prior_idx + image * priors.size(0), labels[near][gt_idx].long()], 1))
        return torch.cat(pairs) if pairs else priors.new_zeros((0, 2), dtype=torch.long)

    @staticmethod
    def reweight_loss_single(
        cls_loss: torch.Tensor,
        reg_loss: torch.Tensor,
        assigned_gt_inds: torch.Tensor,
        labels: torch.Tensor,
        level: int,
        ignored_pairs: torch.Tensor | None = None,
        min_levels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One level's summed losses after feature selection: the priors positive for a gt whose best
        level (``min_levels[gt]``) is not ``level`` lose their regression loss and the loss of their
        label's class. ``cls_loss`` ``(n, C)``, ``reg_loss`` ``(n,)``, ``assigned_gt_inds`` / ``labels``
        ``(n,)``; ``ignored_pairs`` ``(m, 2)`` (prior, class) also lose that class's loss unless the
        prior is a final positive of it. Returns ``(cls_loss sum, reg_loss sum, pos_flags (n,) bool)``
        (the final positives)."""
        if min_levels is None:
            raise ValueError("reweight_loss_single: min_levels (the selected level of each gt) is required")
        cls_weight = torch.ones_like(cls_loss)
        reg_weight = torch.ones_like(reg_loss)
        pos_flags = assigned_gt_inds >= 0
        if pos_flags.any():
            pos_idx = pos_flags.nonzero().flatten()
            dropped = pos_idx[min_levels[assigned_gt_inds[pos_idx]] != level]
            if dropped.numel():
                pos_flags = pos_flags.clone()
                pos_flags[dropped] = False
                reg_weight[dropped] = 0
                cls_weight[dropped, labels[dropped]] = 0
        if ignored_pairs is not None and ignored_pairs.numel():
            prior_idx, cls = ignored_pairs[:, 0], ignored_pairs[:, 1]
            keep = ~(pos_flags[prior_idx] & (labels[prior_idx] == cls))
            cls_weight[prior_idx[keep], cls[keep]] = 0
        return (cls_loss * cls_weight).sum(), (reg_loss * reg_weight).sum(), pos_flags

    def calculate_pos_recall(
        self, cls_scores: Sequence[torch.Tensor], labels_list: Sequence[torch.Tensor],
        pos_flags: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Percent of the final positives whose best class is their label (and above
        ``score_threshold`` when set): ``cls_scores`` ``(B, C, h, w)``, labels / flags ``(B * h * w,)``."""
        with torch.no_grad():
            scores = torch.cat([s.permute(0, 2, 3, 1).reshape(-1, self.num_classes)[p]
                                for s, p in zip(cls_scores, pos_flags)])
            labels = torch.cat([lab.reshape(-1)[p] for lab, p in zip(labels_list, pos_flags)])
            return accuracy(scores.sigmoid(), labels, thresh=self.score_threshold)
