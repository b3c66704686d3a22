"""``SingleStageDetector``: backbone -> (neck) -> one dense head (RetinaNet, SSD, FCOS, ...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.detectors.base import BaseDetector, build_neck
from detcore.ops import multiclass_nms
from detcore.registry import build, get_registry
from detcore.settings import Delegate, check_settings
from detcore.structures.boxes import FLIP_DIRECTIONS, Boxes
from detcore.structures.instances import Instances


class SingleStageDetector(BaseDetector):
    """A detector whose dense head predicts boxes directly from the feature maps.

    Every part is a config table or an already-built module (composition in Python)::

        SingleStageDetector(backbone=ResNet(depth=50), neck=FPN(...), bbox_head=RetinaHead(...))

    Args:
        backbone: backbone table or module (kind ``backbone``).
        neck: optional neck table or module (kind ``neck``), or a list of them applied in order.
        bbox_head: dense-head table or module (kind ``dense_head``); a table is built with
            ``train_cfg`` and ``test_cfg``, a module keeps its own (then leave these ``None``).
        train_cfg: the head's training settings (checked against the head's ``train_settings``).
        test_cfg: the head's test settings (checked against the head's ``test_settings``).
        init_cfg: weight-init table(s) of the detector itself.
    """

    component_kinds = {"backbone": "backbone", "neck": "neck", "bbox_head": "dense_head"}
    #: the detector reads no settings itself: both tables go to the bbox head, which declares them
    train_settings = Delegate("bbox_head")
    test_settings = Delegate("bbox_head")

    def __init__(
        self,
        backbone: Mapping[str, Any] | nn.Module,
        neck: Mapping[str, Any] | Sequence[Mapping[str, Any]] | nn.Module | None = None,
        bbox_head: Mapping[str, Any] | nn.Module | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        name = type(self).__name__
        if bbox_head is None:
            raise ValueError(f"{name}: 'bbox_head' (a dense_head table or module) is required")
        # this class's routing, also under subclasses that reshape their own arguments before calling
        # here (they declare and check theirs at build)
        check_settings(SingleStageDetector, {"bbox_head": bbox_head, "train_cfg": train_cfg,
                                             "test_cfg": test_cfg},
                       where=name, resolver=get_registry().resolve_argument)
        self.backbone = build("backbone", backbone, where="model.backbone")
        if neck is not None:
            self.neck = build_neck(neck)
        if isinstance(bbox_head, Mapping):
            head_cfg = {**bbox_head, "train_cfg": train_cfg, "test_cfg": test_cfg}
            self.bbox_head = build("dense_head", head_cfg, where="model.bbox_head")
        else:
            self.bbox_head = build("dense_head", bbox_head, where="model.bbox_head")
            for key, value in (("train_cfg", train_cfg), ("test_cfg", test_cfg)):
                if value is not None and value != getattr(self.bbox_head, key, None):
                    raise ValueError(
                        f"{name}: bbox_head is a built {type(self.bbox_head).__name__} with its own {key}; "
                        f"pass {key} to the head (or give bbox_head as a table)"
                    )
        self.train_cfg = getattr(self.bbox_head, "train_cfg", train_cfg)
        self.test_cfg = getattr(self.bbox_head, "test_cfg", test_cfg)

    def extract_feat(self, imgs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) feature maps of ``imgs`` ``(B, 3, H, W)``, high to low resolution."""
        feats = self.backbone(imgs)
        if self.with_neck:
            feats = self.neck(feats)
        return tuple(feats)

    def loss(self, imgs: torch.Tensor, img_metas: list[dict], gt_instances: list[Instances],
             gt_ignored_instances: list[Instances] | None = None, **extra: Any) -> dict[str, Any]:
        """The dense head's losses for a batch (``{"loss_cls": [...], "loss_bbox": [...], ...}``)."""
        feats = self.extract_feat(imgs)
        return self.bbox_head.loss(feats, gt_instances, img_metas, gt_ignored_instances)

    def predict(self, imgs: torch.Tensor, img_metas: list[dict], rescale: bool = True,
                **extra: Any) -> list[Instances]:
        """One ``Instances`` (bboxes, scores, labels) per image; original-image coords with ``rescale``."""
        feats = self.extract_feat(imgs)
        return self.bbox_head.predict(feats, img_metas, rescale=rescale)

    def forward_dummy(self, imgs: torch.Tensor) -> Any:
        """The head's raw outputs (for FLOPs counting and export)."""
        return self.bbox_head(self.extract_feat(imgs))

    def aug_test(self, imgs: list[torch.Tensor], img_metas: list[list[dict]], rescale: bool = True,
                 **extra: Any) -> list[Instances]:
        """Test-time augmentation (the reference's merge): per image, every augmentation's candidates
        (no NMS) are mapped back to the original image (un-flipped, divided by ``scale_factor``),
        concatenated, and ``multiclass_nms(score_thr, nms, max_per_img)`` runs once (score factors,
        e.g. centerness, multiply the scores after the threshold, as in a single-scale test).

        Without ``rescale`` the boxes are returned in the first augmentation's scale.
        """
        cfg = self.bbox_head.test_cfg
        per_aug = []
        for batch, metas in zip(imgs, img_metas):
            outs = self.bbox_head(self.extract_feat(batch))
            per_aug.append(
                self.bbox_head.predict_by_feat(*outs, img_metas=metas, rescale=False, with_nms=False)
            )
        results = []
        for i in range(imgs[0].shape[0]):
            boxes = [bbox_mapping_back(aug[i].bboxes, metas[i]) for aug, metas in zip(per_aug, img_metas)]
            scores = torch.cat([aug[i].scores for aug in per_aug])
            scores = torch.cat([scores, scores.new_zeros(scores.shape[0], 1)], dim=1)  # background column
            factors = None
            if per_aug[0][i].has("score_factors"):
                factors = torch.cat([aug[i].score_factors for aug in per_aug])
            dets, labels = multiclass_nms(
                torch.cat(boxes), scores, float(cfg["score_thr"]), dict(cfg["nms"]),
                int(cfg.get("max_per_img", -1)), score_factors=factors,
            )
            bboxes = dets[:, :4]
            if not rescale:
                bboxes = bboxes * scale_factor_tensor(img_metas[0][i]["scale_factor"], bboxes)
            results.append(Instances(bboxes=bboxes, scores=dets[:, 4], labels=labels))
        return results


def bbox_mapping_back(bboxes: torch.Tensor, img_meta: dict) -> torch.Tensor:
    """Boxes ``(N, 4)`` predicted on an augmented image back to the original image: undo the flip
    (``flip``/``flip_direction`` within ``img_shape``), then divide by ``scale_factor``."""
    boxes = Boxes(bboxes)
    if img_meta.get("flip", False):
        direction = img_meta.get("flip_direction") or "horizontal"
        if direction not in FLIP_DIRECTIONS:
            raise ValueError(f"bbox_mapping_back: unknown flip_direction {direction!r}")
        boxes = boxes.flip(img_meta["img_shape"], direction)
    return boxes.unscale(img_meta["scale_factor"]).tensor
