"""``SingleStageDetector``: backbone -> (neck) -> one dense head (RetinaNet, SSD, FCOS, ...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.detectors.base import BaseDetector
from detcore.ops import multiclass_nms
from detcore.registry import build
from detcore.structures.instances import Instances


class SingleStageDetector(BaseDetector):
    """A detector whose dense head predicts boxes directly from the feature maps.

    Args:
        backbone: backbone table (kind ``backbone``).
        neck: optional neck table (kind ``neck``).
        bbox_head: dense-head table (kind ``dense_head``); it receives ``train_cfg`` and ``test_cfg``.
        train_cfg: the head's training settings (assigner, sampler, allowed_border, pos_weight, ...).
        test_cfg: the head's test settings (nms_pre, score_thr, nms, max_per_img, ...).
        init_cfg: weight-init table(s) of the detector itself.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any],
        neck: Mapping[str, Any] | None = None,
        bbox_head: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        if bbox_head is None:
            raise ValueError(f"{type(self).__name__}: 'bbox_head' (a dense_head table) is required")
        self.backbone = build("backbone", backbone, where="model.backbone")
        if neck is not None:
            self.neck = build("neck", neck, where="model.neck")
        head_cfg = dict(bbox_head)
        head_cfg["train_cfg"] = dict(train_cfg) if train_cfg is not None else None
        head_cfg["test_cfg"] = dict(test_cfg) if test_cfg is not None else None
        self.bbox_head = build("dense_head", head_cfg, where="model.bbox_head")
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

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
    out = bboxes.clone()
    if img_meta.get("flip", False):
        h, w = img_meta["img_shape"][:2]
        direction = img_meta.get("flip_direction") or "horizontal"
        if direction in ("horizontal", "diagonal"):
            out[:, 0], out[:, 2] = w - bboxes[:, 2], w - bboxes[:, 0]
        if direction in ("vertical", "diagonal"):
            out[:, 1], out[:, 3] = h - bboxes[:, 3], h - bboxes[:, 1]
        if direction not in ("horizontal", "vertical", "diagonal"):
            raise ValueError(f"bbox_mapping_back: unknown flip_direction {direction!r}")
    return out / scale_factor_tensor(img_meta["scale_factor"], out)
