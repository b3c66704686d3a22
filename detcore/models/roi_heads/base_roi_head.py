"""``BaseRoIHead``: the second stage of a two-stage detector, the parts it is made of and its contract.

::

    roi_head.loss(feats, proposals, gt_instances, img_metas, gt_ignored_instances=None) -> dict[str, Tensor]
    roi_head.predict(feats, proposals, img_metas, rescale=False) -> list[Instances]

``feats`` are the neck's feature maps ``(B, C, h_l, w_l)``, ``proposals`` one ``Instances`` per image
with ``bboxes`` ``(n_i, 4)`` xyxy in input-image pixels (and ``scores``), detached. Sub-components:
``shared_head`` (kind ``roi_head``, e.g. the C4 ``ResLayer``), ``bbox_roi_extractor`` (kind
``roi_extractor``) + ``bbox_head`` (kind ``roi_head``), ``mask_roi_extractor`` + ``mask_head``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.init import BaseModule
from detcore.registry import build
from detcore.settings import checked
from detcore.structures.instances import Instances


class BaseRoIHead(BaseModule):
    """Base of RoI heads: builds the sub-heads in the reference's attribute order.

    Args:
        bbox_roi_extractor / bbox_head: the box branch (kinds ``roi_extractor`` / ``roi_head``).
        mask_roi_extractor / mask_head: the mask branch; without ``mask_roi_extractor`` the mask head
            reads the box branch's RoI features (shared extractor, as in the C4 Mask R-CNN).
        shared_head: a head applied to every RoI's features before the branches.
        train_cfg: the detector's ``train_cfg.rcnn`` (assigner, sampler, pos_weight, mask_size, ...).
        test_cfg: the detector's ``test_cfg.rcnn`` (score_thr, nms, max_per_img, mask_thr_binary).
        init_cfg: weight-init table(s).
    """

    component_kinds = {
        "bbox_roi_extractor": "roi_extractor", "bbox_head": "roi_head", "mask_roi_extractor": "roi_extractor",
        "mask_head": "roi_head", "shared_head": "roi_head",
    }

    def __init__(
        self,
        bbox_roi_extractor: Mapping[str, Any] | None = None,
        bbox_head: Mapping[str, Any] | None = None,
        mask_roi_extractor: Mapping[str, Any] | None = None,
        mask_head: Mapping[str, Any] | None = None,
        shared_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if shared_head is not None:
            self.shared_head = build("roi_head", shared_head, where=f"{name}.shared_head")
        if bbox_head is not None:
            self.init_bbox_head(bbox_roi_extractor, bbox_head)
        if mask_head is not None:
            self.init_mask_head(mask_roi_extractor, mask_head)
        # checked once the sub-heads exist: they declare the keys they read from these tables
        self.train_cfg = checked(self, "train_cfg", train_cfg, where=name)
        self.test_cfg = checked(self, "test_cfg", test_cfg, where=name)
        self.init_assigner_sampler()

    @property
    def with_bbox(self) -> bool:
        return getattr(self, "bbox_head", None) is not None

    @property
    def with_mask(self) -> bool:
        return getattr(self, "mask_head", None) is not None

    @property
    def with_shared_head(self) -> bool:
        return getattr(self, "shared_head", None) is not None

    def init_bbox_head(
        self, bbox_roi_extractor: Mapping[str, Any] | None, bbox_head: Mapping[str, Any]
    ) -> None:
        """Build ``bbox_roi_extractor`` and ``bbox_head``."""
        raise NotImplementedError

    def init_mask_head(
        self, mask_roi_extractor: Mapping[str, Any] | None, mask_head: Mapping[str, Any]
    ) -> None:
        """Build ``mask_roi_extractor`` (or share the box one) and ``mask_head``."""
        raise NotImplementedError

    def init_assigner_sampler(self) -> None:
        """Build ``bbox_assigner`` and ``bbox_sampler`` from ``train_cfg`` (nothing without it)."""
        raise NotImplementedError

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses of the RoI stage."""
        raise NotImplementedError

    def predict(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances],
        img_metas: Sequence[dict],
        rescale: bool = False,
    ) -> list[Instances]:
        """Detections, one ``Instances`` per image (original-image coordinates with ``rescale``)."""
        raise NotImplementedError


def proposal_boxes(proposals: Sequence[Instances | torch.Tensor], where: str) -> list[torch.Tensor]:
    """The ``(n_i, 4)`` boxes of per-image proposals given as ``Instances`` (``bboxes``) or tensors
    ``(n_i, 4 | 5)`` (a fifth column is a score)."""
    boxes = []
    for i, p in enumerate(proposals):
        b = p.bboxes if isinstance(p, Instances) else p
        if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] not in (4, 5):
            shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
            raise ValueError(f"{where}: proposals of image {i} must be (n, 4) boxes, got {shape}")
        boxes.append(b[:, :4])
    return boxes
