"""``TridentRoIHead`` and ``TridentFasterRCNN``: Faster R-CNN (C4) on a :class:`TridentResNet`.

Training: the backbone's output holds ``num_branch`` copies of the batch (branch-major), so the ground
truth and the metas are repeated ``num_branch`` times and the RPN and the RoI head train on the
branches as on a batch ``num_branch`` times as large (the reference's scheme). With
``scale_aware_ranges`` (the paper's scale-aware training, section 4.2; off in the reference's config)
branch ``b`` keeps only the ground-truth boxes whose size ``sqrt(w * h)`` (input pixels) lies in
``[lo_b, hi_b]``; the others are moved to that branch's ignored boxes, so they are neither positives
nor, where the assigners honour ignored boxes (``ignore_iof_thr``), negatives.

Test: with ``test_branch_idx >= 0`` (TridentNet Fast, the reference's default 1) only that branch runs
and the detector is a plain Faster R-CNN; with ``-1`` every branch runs and the RoI head merges the
branches' detections of each image with one more per-class NMS (``test_cfg.rcnn.nms``, then
``max_per_img``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from det_plugin_rcnn.detectors import FasterRCNN

from detcore.models.roi_heads.standard_roi_head import StandardRoIHead
from detcore.ops import batched_nms
from detcore.structures.instances import Instances


class TridentRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` that merges the branches' detections when all branches run at test.

    Args:
        num_branch: branches of the backbone (3).
        test_branch_idx: the branch run at test time, -1 for all (then merged by NMS).
        **kwargs: the :class:`StandardRoIHead` arguments.
    """

    def __init__(self, num_branch: int = 3, test_branch_idx: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_branch < 1 or not -1 <= test_branch_idx < num_branch:
            raise ValueError(
                f"TridentRoIHead: need num_branch >= 1 and test_branch_idx in [-1, {num_branch}), got "
                f"{num_branch} and {test_branch_idx}"
            )
        self.num_branch = num_branch
        self.test_branch_idx = test_branch_idx

    def merge_branches(self, results: Sequence[Instances], num_images: int) -> list[Instances]:
        """Per image, the detections of every branch (``results[b * num_images + i]``) merged by a
        per-class NMS (``test_cfg.nms``) and cut to ``test_cfg.max_per_img``."""
        if len(results) != self.num_branch * num_images:
            raise ValueError(
                f"TridentRoIHead: {len(results)} results for {self.num_branch} branches x {num_images} images"
            )
        cfg = self.test_cfg or {}
        iou = float((cfg.get("nms") or {}).get("iou_threshold", 0.5))
        max_per_img = int(cfg.get("max_per_img", -1))
        merged = []
        for i in range(num_images):
            parts = [results[b * num_images + i] for b in range(self.num_branch)]
            bboxes = torch.cat([p.bboxes for p in parts])
            scores = torch.cat([p.scores for p in parts])
            labels = torch.cat([p.labels for p in parts])
            keep = batched_nms(bboxes, scores, labels, iou)
            if max_per_img > 0:
                keep = keep[:max_per_img]
            merged.append(Instances(bboxes=bboxes[keep], scores=scores[keep], labels=labels[keep]))
        return merged

    def predict(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        img_metas: Sequence[dict],
        rescale: bool = False,
    ) -> list[Instances]:
        """Detections per image; with every branch running, ``proposals`` and ``img_metas`` are the
        branch-major ``num_branch x B`` lists and the result is merged to ``B`` images."""
        results = super().predict(feats, proposals, img_metas, rescale=rescale)
        if self.test_branch_idx == -1 and self.num_branch > 1:
            return self.merge_branches(results, len(results) // self.num_branch)
        return results


def _box_sizes(boxes: torch.Tensor) -> torch.Tensor:
    wh = (boxes[:, 2:4] - boxes[:, 0:2]).clamp(min=0)
    return (wh[:, 0] * wh[:, 1]).sqrt()


class TridentFasterRCNN(FasterRCNN):
    """Faster R-CNN on a ``TridentResNet`` with a ``TridentRoIHead``.

    Args:
        scale_aware_ranges: ``None`` (the reference) or one ``[lo, hi]`` per branch (input pixels; ``hi``
            -1 for no upper bound), e.g. the paper's ``[[0, 90], [30, 160], [90, -1]]``.
        others: as :class:`FasterRCNN`. The backbone's and the RoI head's ``num_branch`` and
            ``test_branch_idx`` must agree.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        rpn_head: Mapping[str, Any],
        roi_head: Mapping[str, Any],
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        scale_aware_ranges: Sequence[Sequence[float]] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(backbone, rpn_head, roi_head, train_cfg=train_cfg, test_cfg=test_cfg, neck=neck,
                         init_cfg=init_cfg)  # fmt: skip
        name = type(self).__name__
        for part in ("backbone", "roi_head"):
            if not hasattr(getattr(self, part), "num_branch"):
                raise ValueError(f"{name}: the {part} must be a trident one (TridentResNet / TridentRoIHead)")
        b, r = self.backbone, self.roi_head
        if (b.num_branch, b.test_branch_idx) != (r.num_branch, r.test_branch_idx):
            raise ValueError(
                f"{name}: backbone num_branch / test_branch_idx ({b.num_branch}, {b.test_branch_idx}) differ "
                f"from the roi_head's ({r.num_branch}, {r.test_branch_idx})"
            )
        self.num_branch = b.num_branch
        self.test_branch_idx = b.test_branch_idx
        self.scale_aware_ranges = None
        if scale_aware_ranges is not None:
            ranges = [tuple(float(v) for v in r_) for r_ in scale_aware_ranges]
            if len(ranges) != self.num_branch or any(len(r_) != 2 for r_ in ranges):
                raise ValueError(
                    f"{name}: scale_aware_ranges needs one [lo, hi] per branch ({self.num_branch}), got "
                    f"{scale_aware_ranges}"
                )
            self.scale_aware_ranges = ranges

    def branch_ground_truth(
        self, gt_instances: Sequence[Instances], gt_ignored_instances: Sequence[Instances] | None
    ) -> tuple[list[Instances], list[Instances] | None]:
        """The ground truth of the ``num_branch x B`` branch images (branch-major), filtered by
        ``scale_aware_ranges`` when given (boxes out of a branch's range become its ignored boxes)."""
        if self.scale_aware_ranges is None:
            if gt_ignored_instances is None:
                return list(gt_instances) * self.num_branch, None
            return list(gt_instances) * self.num_branch, list(gt_ignored_instances) * self.num_branch
        gts, ignored = [], []
        for lo, hi in self.scale_aware_ranges:
            for i, gt in enumerate(gt_instances):
                size = _box_sizes(gt.bboxes)
                keep = size >= lo
                if hi >= 0:
                    keep &= size <= hi
                extra = gt.bboxes[~keep]
                base = gt_ignored_instances[i].bboxes if gt_ignored_instances is not None else extra[:0]
                gts.append(gt[keep])
                ignored.append(Instances(bboxes=torch.cat([base.to(extra), extra])))
        return gts, ignored

    def loss(
        self,
        imgs: torch.Tensor,
        img_metas: list[dict],
        gt_instances: list[Instances],
        gt_ignored_instances: list[Instances] | None = None,
        proposals: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The Faster R-CNN losses over the ``num_branch x B`` branch images."""
        gts, ignored = self.branch_ground_truth(gt_instances, gt_ignored_instances)
        return super().loss(imgs, list(img_metas) * self.num_branch, gts, ignored, proposals, **extra)

    def predict(
        self,
        imgs: torch.Tensor,
        img_metas: list[dict],
        rescale: bool = True,
        proposals: Any = None,
        **extra: Any,
    ) -> list[Instances]:
        """Detections per image (one branch, or every branch merged with ``test_branch_idx = -1``)."""
        running = self.num_branch if (self.training or self.test_branch_idx == -1) else 1
        return super().predict(imgs, list(img_metas) * running, rescale=rescale, proposals=proposals, **extra)


__all__ = ["TridentFasterRCNN", "TridentRoIHead"]
