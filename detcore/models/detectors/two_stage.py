"""``TwoStageDetector``: backbone -> (neck) -> RPN proposals -> RoI head (Fast / Faster / Mask R-CNN, ...).

The detector splits its settings between the stages as the reference 2.x does: ``train_cfg.rpn`` and
``test_cfg.rpn`` go to the RPN head, ``train_cfg.rcnn`` and ``test_cfg.rcnn`` to the RoI head, and
``train_cfg.rpn_proposal`` selects the proposals the RoI head trains on (``test_cfg.rpn`` when absent).
Without an RPN head (Fast R-CNN) the proposals come with the batch (``proposals``: one ``Instances``
with ``bboxes`` (and ``scores``) per image, in input-image pixels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.detectors.base import BaseDetector
from detcore.registry import build
from detcore.structures.instances import Instances


def _sub(cfg: Mapping[str, Any] | None, key: str) -> dict[str, Any] | None:
    if cfg is None or cfg.get(key) is None:
        return None
    return dict(cfg[key])


class TwoStageDetector(BaseDetector):
    """A detector with a region-proposal stage and a RoI stage.

    Args:
        backbone: backbone table (kind ``backbone``).
        neck: optional neck table (kind ``neck``).
        rpn_head: optional dense-head table (kind ``dense_head``); it receives ``train_cfg.rpn`` and
            ``test_cfg.rpn``. Without it, proposals must come with every batch.
        roi_head: RoI-head table (kind ``roi_head``); it receives ``train_cfg.rcnn`` and ``test_cfg.rcnn``.
        train_cfg: ``{rpn, rpn_proposal, rcnn}`` tables.
        test_cfg: ``{rpn, rcnn}`` tables.
        init_cfg: weight-init table(s) of the detector itself.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | None = None,
        rpn_head: Mapping[str, Any] | None = None,
        roi_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if roi_head is None:
            raise ValueError(f"{type(self).__name__}: 'roi_head' (a roi_head table) is required")
        self.backbone = build("backbone", backbone, where="model.backbone")
        if neck is not None:
            self.neck = build("neck", neck, where="model.neck")
        if rpn_head is not None:
            rpn_cfg = dict(rpn_head)
            rpn_cfg["train_cfg"] = _sub(train_cfg, "rpn")
            rpn_cfg["test_cfg"] = _sub(test_cfg, "rpn")
            self.rpn_head = build("dense_head", rpn_cfg, where="model.rpn_head")
        roi_cfg = dict(roi_head)
        roi_cfg["train_cfg"] = _sub(train_cfg, "rcnn")
        roi_cfg["test_cfg"] = _sub(test_cfg, "rcnn")
        self.roi_head = build("roi_head", roi_cfg, where="model.roi_head")
        self.train_cfg = dict(train_cfg) if train_cfg is not None else None
        self.test_cfg = dict(test_cfg) if test_cfg is not None else None

    @property
    def with_rpn(self) -> bool:
        return getattr(self, "rpn_head", None) is not None

    @property
    def with_roi_head(self) -> bool:
        return getattr(self, "roi_head", None) is not None

    def extract_feat(self, imgs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) feature maps of ``imgs`` ``(B, 3, H, W)``, high to low resolution."""
        feats = self.backbone(imgs)
        if self.with_neck:
            feats = self.neck(feats)
        return tuple(feats)

    def _given_proposals(self, proposals: Any, num_imgs: int) -> list[Any]:
        name = type(self).__name__
        if proposals is None:
            raise ValueError(
                f"{name}: no rpn_head, so every batch needs 'proposals' (one Instances per image; add "
                "LoadProposals to the pipeline)"
            )
        if len(proposals) != num_imgs:
            raise ValueError(f"{name}: {len(proposals)} proposal sets for a batch of {num_imgs} images")
        return list(proposals)

    def loss(
        self,
        imgs: torch.Tensor,
        img_metas: list[dict],
        gt_instances: list[Instances],
        gt_ignored_instances: list[Instances] | None = None,
        proposals: Any = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """RPN losses (``loss_rpn_cls``, ``loss_rpn_bbox``) and RoI losses (``loss_cls``, ``acc``,
        ``loss_bbox``, ...) of a batch in one dict."""
        feats = self.extract_feat(imgs)
        losses: dict[str, Any] = {}
        if self.with_rpn:
            train_cfg = self.train_cfg or {}
            proposal_cfg = train_cfg.get("rpn_proposal", (self.test_cfg or {}).get("rpn"))
            rpn_losses, proposal_list = self.rpn_head.loss_and_predict(
                feats, gt_instances, img_metas, gt_ignored_instances, proposal_cfg=proposal_cfg
            )
            overlap = set(rpn_losses) & {"loss_cls", "loss_bbox", "acc"}
            if overlap:
                raise ValueError(
                    f"{type(self).__name__}: the rpn_head's losses {sorted(overlap)} would overwrite the RoI "
                    "head's; an RPN head names them loss_rpn_*"
                )
            losses.update(rpn_losses)
        else:
            proposal_list = self._given_proposals(proposals, imgs.shape[0])
        losses.update(self.roi_head.loss(feats, proposal_list, gt_instances, img_metas, gt_ignored_instances))
        return losses

    def predict(
        self,
        imgs: torch.Tensor,
        img_metas: list[dict],
        rescale: bool = True,
        proposals: Any = None,
        **extra: Any,
    ) -> list[Instances]:
        """One ``Instances`` per image (``bboxes``, ``scores``, ``labels``, + ``masks``); original-image
        coordinates with ``rescale``. Given ``proposals`` replace the RPN's."""
        feats = self.extract_feat(imgs)
        if proposals is None and self.with_rpn:
            proposal_list = self.rpn_head.predict(feats, img_metas, rescale=False)
        else:
            proposal_list = self._given_proposals(proposals, imgs.shape[0])
        return self.roi_head.predict(feats, proposal_list, img_metas, rescale=rescale)

    def forward_dummy(self, imgs: torch.Tensor) -> Any:
        """Raw outputs for FLOPs counting: the RPN's maps and the RoI head's outputs for the RPN's
        proposals (or 1000 fixed boxes without an RPN)."""
        feats = self.extract_feat(imgs)
        h, w = imgs.shape[-2:]
        metas = [dict(img_shape=(h, w, 3), pad_shape=(h, w, 3), scale_factor=[1.0] * 4)] * imgs.shape[0]
        outs: tuple = ()
        if self.with_rpn:
            outs = (self.rpn_head(feats),)
            proposal_list = self.rpn_head.predict(feats, metas, rescale=False)
        else:
            t = torch.linspace(0, 1, 1000, device=imgs.device)
            boxes = torch.stack([t * w * 0.5, t * h * 0.5, t * w * 0.5 + w * 0.5, t * h * 0.5 + h * 0.5], 1)
            proposal_list = [Instances(bboxes=boxes) for _ in metas]
        return outs + (self.roi_head.predict(feats, proposal_list, metas, rescale=False),)
