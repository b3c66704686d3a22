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
from torch import nn

from detcore.models.detectors.base import BaseDetector, build_neck
from detcore.registry import build, get_registry
from detcore.settings import Delegate, Settings, check_settings
from detcore.structures.instances import Instances


def _sub(cfg: Mapping[str, Any] | None, key: str) -> Any:
    return None if cfg is None else cfg.get(key)


class TwoStageDetector(BaseDetector):
    """A detector with a region-proposal stage and a RoI stage.

    Every part is a config table or an already-built module; a built head keeps its own settings
    (then leave its part of ``train_cfg`` / ``test_cfg`` out).

    Args:
        backbone: backbone table or module (kind ``backbone``).
        neck: optional neck table or module (kind ``neck``), or a list of them applied in order.
        rpn_head: optional dense-head table or module (kind ``dense_head``); a table is built with
            ``train_cfg.rpn`` and ``test_cfg.rpn``. Without it, proposals must come with every batch.
        roi_head: RoI-head table or module (kind ``roi_head``); a table is built with
            ``train_cfg.rcnn`` and ``test_cfg.rcnn``.
        train_cfg: ``{rpn, rpn_proposal, rcnn}`` tables, each checked by the head that reads it
            (``rpn_proposal`` by the RPN head's test settings).
        test_cfg: ``{rpn, rcnn}`` tables.
        init_cfg: weight-init table(s) of the detector itself.
    """

    component_kinds = {
        "backbone": "backbone", "neck": "neck", "rpn_head": "dense_head", "roi_head": "roi_head",
    }
    train_settings = Settings(
        rpn=Delegate("rpn_head"),
        rpn_proposal=Delegate("rpn_head", phase="test_cfg"),
        rcnn=Delegate("roi_head"),
    )
    test_settings = Settings(rpn=Delegate("rpn_head"), rcnn=Delegate("roi_head"))

    def __init__(
        self,
        backbone: Mapping[str, Any] | nn.Module,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | nn.Module | None = None,
        rpn_head: Mapping[str, Any] | nn.Module | None = None,
        roi_head: Mapping[str, Any] | nn.Module | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if roi_head is None:
            raise ValueError(f"{name}: 'roi_head' (a roi_head table or module) is required")
        parts = {"rpn_head": rpn_head, "roi_head": roi_head, "train_cfg": train_cfg, "test_cfg": test_cfg}
        check_settings(TwoStageDetector, parts, where=name, resolver=get_registry().resolve_argument)
        self.backbone = build("backbone", backbone, where="model.backbone")
        if neck is not None:
            self.neck = build_neck(neck)
        if rpn_head is not None:
            self.rpn_head = _build_head("dense_head", rpn_head, train_cfg, test_cfg, "rpn", "model.rpn_head")
        self.roi_head = _build_head("roi_head", roi_head, train_cfg, test_cfg, "rcnn", "model.roi_head")
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
        ``loss_bbox``, ...) of a batch in one dict. The batch entries of ``extra`` that the RoI head
        names in its ``loss_inputs`` (e.g. ``gt_semantic_seg``) go to its ``loss`` as keywords."""
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
        # batch entries the RoI head asks for by name (e.g. HTC's gt_semantic_seg)
        wanted = {k: extra[k] for k in getattr(self.roi_head, "loss_inputs", ()) if k in extra}
        missing = set(getattr(self.roi_head, "loss_inputs", ())) - set(wanted)
        if missing:
            raise KeyError(
                f"{type(self).__name__}: the roi_head {type(self.roi_head).__name__} trains on "
                f"{sorted(missing)}, which the batch lacks (load them in the pipeline)"
            )
        losses.update(
            self.roi_head.loss(feats, proposal_list, gt_instances, img_metas, gt_ignored_instances, **wanted)
        )
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


def _build_head(kind: str, head: Any, train_cfg: Any, test_cfg: Any, key: str, where: str) -> Any:
    """A head table built with ``train_cfg[key]`` / ``test_cfg[key]``, or a built head as it is (then
    its settings are its own: a different ``train_cfg[key]`` / ``test_cfg[key]`` is an error)."""
    train, test = _sub(train_cfg, key), _sub(test_cfg, key)
    if isinstance(head, Mapping):
        return build(kind, {**head, "train_cfg": train, "test_cfg": test}, where=where)
    head = build(kind, head, where=where)
    for param, value in (("train_cfg", train), ("test_cfg", test)):
        if value is not None and value != getattr(head, param, None):
            raise ValueError(
                f"{where}: a built {type(head).__name__} with its own {param}; pass {param}.{key} to the "
                "head (or give it as a table)"
            )
    return head
