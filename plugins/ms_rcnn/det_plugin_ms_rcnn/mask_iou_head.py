"""``MaskIoUHead``: Mask Scoring R-CNN's MaskIoU branch (Huang et al., CVPR 2019).

The head regresses, per class, the IoU between a RoI's predicted mask and its ground-truth instance.
Input: the RoI's mask features ``(N, C, S, S)`` (the mask branch's RoI features, ``S = 14``) and the
predicted mask logits of one class ``(N, 2S, 2S)``; the mask is turned into probabilities, max-pooled
2x2 to ``S x S`` and concatenated as one more channel. ``num_convs`` 3x3 convs (the last with stride
2: ``S -> S / 2``) and ``num_fcs`` fully connected layers, all with ReLU, then ``fc_mask_iou`` gives
``(N, num_classes)`` IoU predictions.

Module names follow the reference checkpoints: ``convs.N`` (plain ``Conv2d``), ``fcs.N``,
``fc_mask_iou``.

Targets (:func:`mask_iou_targets`): the IoU of the binarised predicted mask and the ground-truth mask
target inside the RoI, with the ground-truth area taken for the *whole* instance: the target's area
inside the RoI divided by the share of the instance's area that lies inside the RoI
(:func:`area_ratios`), so a RoI that cuts an object off cannot score a high IoU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from detcore.models.init import BaseModule, ModuleList
from detcore.registry import build
from detcore.structures.instances import Instances
from detcore.structures.masks import BaseMasks

#: the reference's initialisation: Kaiming (fan_out, relu) convs, Caffe2Xavier fcs, Normal(0.01) output
_DEFAULT_INIT = (
    {"type": "Kaiming", "override": {"name": "convs"}},
    {"type": "Caffe2Xavier", "override": {"name": "fcs"}},
    {"type": "Normal", "std": 0.01, "override": {"name": "fc_mask_iou"}},
)


def area_ratios(
    pos_proposals: torch.Tensor, pos_assigned_gt_inds: torch.Tensor, gt_masks: BaseMasks
) -> torch.Tensor:
    """Share of each positive's ground-truth instance area that lies inside the positive's RoI.

    Args:
        pos_proposals: ``(P, 4)`` xyxy RoIs in input-image pixels; truncated to integer pixels (as the
            reference) and clipped to the mask canvas before cropping.
        pos_assigned_gt_inds: ``(P,)`` index of each RoI's instance in ``gt_masks``.
        gt_masks: the image's :class:`BitmapMasks` or :class:`PolygonMasks` (full image).

    Returns:
        ``(P,)`` float32 on ``pos_proposals``' device: ``area(instance inside RoI) / (area(instance) +
        1e-7)``.
    """
    num = pos_proposals.shape[0]
    if num == 0:
        return pos_proposals.new_zeros((0,))
    if not isinstance(gt_masks, BaseMasks):
        raise TypeError(
            f"MaskIoUHead: the area ratios need BitmapMasks or PolygonMasks, got {type(gt_masks).__name__}"
        )
    boxes = pos_proposals.detach().cpu().numpy().astype(np.int32)
    inds = pos_assigned_gt_inds.detach().cpu().numpy().astype(np.int64)
    if inds.size and (inds.min() < 0 or inds.max() >= len(gt_masks)):
        raise IndexError(
            f"MaskIoUHead: assigned gt indices {inds.min()}..{inds.max()} outside the {len(gt_masks)} masks"
        )
    full = gt_masks.areas
    ratios = [
        float(gt_masks[int(i)].crop(box).areas[0]) / (float(full[i]) + 1e-7) for box, i in zip(boxes, inds)
    ]
    return torch.tensor(ratios, dtype=torch.float32, device=pos_proposals.device)


def mask_iou_targets(
    mask_preds: torch.Tensor,
    mask_targets: torch.Tensor,
    ratios: torch.Tensor,
    mask_thr_binary: float = 0.5,
) -> torch.Tensor:
    """MaskIoU targets of the positives.

    Args:
        mask_preds: ``(P, M, M)`` predicted mask *logits* of each positive's ground-truth class. They are
            binarised as ``logit > mask_thr_binary``, which is what the reference does (with the
            default 0.5 a pixel counts when its probability exceeds sigmoid(0.5) = 0.62).
        mask_targets: ``(P, M, M)`` binary ground-truth targets inside the RoIs.
        ratios: ``(P,)`` :func:`area_ratios`.

    Returns:
        ``(P,)``: ``overlap / (pred_area + gt_full_area - overlap)`` with ``gt_full_area =
        target_area / (ratio + 1e-7)`` (all in ``M x M`` target cells); 0 where the union is empty.
    """
    if mask_preds.shape != mask_targets.shape or mask_preds.dim() != 3:
        raise ValueError(
            f"mask_iou_targets: predictions {tuple(mask_preds.shape)} and targets "
            f"{tuple(mask_targets.shape)} must both be (P, M, M)"
        )
    if ratios.shape != mask_preds.shape[:1]:
        raise ValueError(
            f"mask_iou_targets: {tuple(ratios.shape)} area ratios for {mask_preds.shape[0]} masks"
        )
    binary = (mask_preds.detach() > mask_thr_binary).float()
    targets = mask_targets.float()
    pred_areas = binary.sum((-1, -2))
    overlaps = (binary * targets).sum((-1, -2))
    gt_full_areas = targets.sum((-1, -2)) / (ratios.to(targets) + 1e-7)
    union = pred_areas + gt_full_areas - overlaps
    return torch.where(union > 0, overlaps / union.clamp(min=1e-12), torch.zeros_like(union))


class MaskIoUHead(BaseModule):
    """Predicts the IoU of a RoI's mask with its ground truth, per class.

    Args:
        num_convs: 3x3 convs (>= 1); the first takes ``in_channels + 1`` channels (features + mask),
            the last has stride 2.
        num_fcs: fully connected layers (>= 1) of ``fc_out_channels``.
        roi_feat_size: side ``S`` of the mask RoI features (14); the predicted masks are ``2S x 2S``.
        in_channels, conv_out_channels, fc_out_channels: widths.
        num_classes: IoU outputs (one per foreground class).
        loss_iou: loss table (``MSELoss`` with ``loss_weight = 0.5``).
        init_cfg: weight-init tables (default: the reference's Kaiming / Caffe2Xavier / Normal(0.01)).
    """

    def __init__(
        self,
        num_convs: int = 4,
        num_fcs: int = 2,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_out_channels: int = 256,
        fc_out_channels: int = 1024,
        num_classes: int = 80,
        loss_iou: Mapping[str, Any] = {"type": "MSELoss", "loss_weight": 0.5},  # noqa: B006 - read only
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__([dict(c) for c in _DEFAULT_INIT] if init_cfg is None else init_cfg)
        name = type(self).__name__
        if num_convs < 1 or num_fcs < 1:
            raise ValueError(f"{name}: num_convs and num_fcs must be >= 1, got {num_convs} and {num_fcs}")
        if roi_feat_size < 2 or roi_feat_size % 2:
            raise ValueError(
                f"{name}: roi_feat_size must be even (halved by the last conv), got {roi_feat_size}"
            )
        self.num_convs = num_convs
        self.num_fcs = num_fcs
        self.roi_feat_size = roi_feat_size
        self.in_channels = in_channels
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.num_classes = num_classes
        self.convs = ModuleList(
            [
                nn.Conv2d(
                    in_channels + 1 if i == 0 else conv_out_channels,
                    conv_out_channels,
                    3,
                    stride=2 if i == num_convs - 1 else 1,
                    padding=1,
                )
                for i in range(num_convs)
            ]
        )
        pooled_area = (roi_feat_size // 2) ** 2
        self.fcs = ModuleList(
            [
                nn.Linear(conv_out_channels * pooled_area if i == 0 else fc_out_channels, fc_out_channels)
                for i in range(num_fcs)
            ]
        )
        self.fc_mask_iou = nn.Linear(fc_out_channels, num_classes)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(2, 2)
        self.loss_iou = build("loss", loss_iou, where="mask_iou_head.loss_iou")

    def forward(self, mask_feats: torch.Tensor, mask_preds: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` RoI features and ``(N, 2S, 2S)`` mask logits -> ``(N, num_classes)`` IoUs."""
        name = type(self).__name__
        s = self.roi_feat_size
        if mask_feats.dim() != 4 or tuple(mask_feats.shape[1:]) != (self.in_channels, s, s):
            raise ValueError(
                f"{name}: expected mask features (N, {self.in_channels}, {s}, {s}), "
                f"got {tuple(mask_feats.shape)}"
            )
        if (
            mask_preds.dim() != 3
            or tuple(mask_preds.shape[1:]) != (2 * s, 2 * s)
            or (mask_preds.shape[0] != mask_feats.shape[0])
        ):
            raise ValueError(
                f"{name}: expected one ({2 * s}, {2 * s}) mask per RoI ({mask_feats.shape[0]}), got "
                f"{tuple(mask_preds.shape)}"
            )
        pooled = self.max_pool(mask_preds.sigmoid().unsqueeze(1))
        x = torch.cat([mask_feats, pooled], 1)
        for conv in self.convs:
            x = self.relu(conv(x))
        x = x.flatten(1)
        for fc in self.fcs:
            x = self.relu(fc(x))
        return self.fc_mask_iou(x)

    # -- training ----------------------------------------------------------------------------------

    def get_targets(
        self,
        sampling_results: Sequence[Any],
        gt_instances: Sequence[Instances],
        mask_preds: torch.Tensor,
        mask_targets: torch.Tensor,
        mask_thr_binary: float,
    ) -> torch.Tensor:
        """``(P,)`` IoU targets of the batch's positives (``torch.cat([r.pos_bboxes ...])`` order).

        ``mask_preds`` ``(P, M, M)``: logits of each positive's gt class; ``mask_targets`` ``(P, M, M)``:
        the mask head's targets; see :func:`mask_iou_targets`."""
        if len(sampling_results) != len(gt_instances):
            raise ValueError(
                f"{type(self).__name__}: {len(sampling_results)} sampling results for "
                f"{len(gt_instances)} images"
            )
        ratios = (
            torch.cat(
                [
                    area_ratios(res.pos_bboxes, res.pos_assigned_gt_inds, gt.masks)
                    for res, gt in zip(sampling_results, gt_instances)
                ]
            )
            if sampling_results
            else mask_preds.new_zeros((0,))
        )
        return mask_iou_targets(mask_preds, mask_targets, ratios.to(mask_preds.device), mask_thr_binary)

    def loss(self, mask_iou_pred: torch.Tensor, mask_iou_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss_mask_iou"}``: ``loss_iou`` of the predictions ``(P,)`` (each positive's gt-class
        output) against the targets ``(P,)``, over the positives whose target is > 0 (0 without any)."""
        if mask_iou_pred.shape != mask_iou_targets.shape:
            raise ValueError(
                f"{type(self).__name__}.loss: predictions {tuple(mask_iou_pred.shape)} and targets "
                f"{tuple(mask_iou_targets.shape)} differ"
            )
        keep = mask_iou_targets > 0
        if bool(keep.any()):
            loss = self.loss_iou(mask_iou_pred[keep], mask_iou_targets[keep].to(mask_iou_pred))
        else:
            loss = mask_iou_pred.sum() * 0
        return {"loss_mask_iou": loss}

    # -- inference ---------------------------------------------------------------------------------

    @staticmethod
    def get_mask_scores(
        mask_iou_pred: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Mask scores ``(N,)``: each detection's classification score times the predicted IoU of its
        class (``mask_iou_pred`` ``(N, num_classes)``)."""
        if mask_iou_pred.shape[0] != scores.shape[0] or labels.shape != scores.shape:
            raise ValueError(
                f"MaskIoUHead.get_mask_scores: {mask_iou_pred.shape[0]} IoU rows, "
                f"{scores.shape[0]} scores and {labels.shape[0]} labels"
            )
        rows = torch.arange(labels.shape[0], device=labels.device)
        return mask_iou_pred[rows, labels.long()] * scores


__all__ = ["MaskIoUHead", "area_ratios", "mask_iou_targets"]
