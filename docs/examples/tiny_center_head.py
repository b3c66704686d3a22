"""The worked example of docs/writing-a-detector.md: a small CenterNet-style family, complete.

- ``TinyBackbone``: two stride-2 convs (a stand-in for ResNet + FPN): one map at stride 4.
- ``TinyCenterHead``: a dense head with no prior generator and no box coder. Per class a heatmap of
  object centers, per location the box size and the sub-pixel offset of the center. Training draws a
  Gaussian peak per object (``gaussian_radius`` / ``gen_gaussian_target``) and uses
  ``GaussianFocalLoss`` and ``L1Loss``; prediction keeps the heatmap's local maxima, the top ``topk``
  over classes and positions, and post-processes with ``BaseDenseHead._bbox_post_process``.
- the registration hooks of a plugin offering both; the detector is detcore's ``SingleStageDetector``.

tests/kernel/test_writing_a_detector_example.py trains it on a fake batch and predicts with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

import detcore
from detcore.hookspecs import hookimpl
from detcore.models.dense_heads.base_dense_head import BaseDenseHead
from detcore.models.layers import ConvModule
from detcore.models.task_utils import (
    gaussian_radius,
    gen_gaussian_target,
    get_local_maximum,
    get_topk_from_heatmap,
    transpose_and_gather_feat,
)
from detcore.settings import NMS_SETTINGS, Key, Settings, checked
from detcore.structures.boxes import clip_boxes
from detcore.structures.instances import Instances


class TinyBackbone(nn.Module):
    """Images ``(B, 3, H, W)`` -> a tuple of one map ``(B, channels, H / 4, W / 4)``."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = ConvModule(3, channels, 3, stride=2, padding=1, norm_cfg={"type": "BN"})
        self.layer = ConvModule(channels, channels, 3, stride=2, padding=1, norm_cfg={"type": "BN"})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.layer(self.stem(x)),)


class TinyCenterHead(BaseDenseHead):
    """Center heatmaps, box sizes and center offsets on the first (highest-resolution) input level.

    Args:
        num_classes: foreground classes.
        in_channels: channels of the input map.
        feat_channels: channels of each branch's 3x3 conv.
        loss_center / loss_wh / loss_offset: loss tables or built losses (kind ``loss``).
        train_cfg / test_cfg: the settings declared below, given by the detector.
        init_cfg: weight init (default: the heatmap's bias at prior probability 0.1).

    ``forward(feats)`` returns three lists with one entry per level (only the first is used):
    ``center_heatmaps (B, num_classes, h, w)`` logits, ``wh_preds (B, 2, h, w)`` box width and height
    and ``offset_preds (B, 2, h, w)`` center offsets, both in feature-map pixels.
    """

    train_settings = Settings(
        min_overlap=Key(float, 0.3, doc="IoU a box keeps when its center moves by the peak's radius"),
    )
    test_settings = Settings(
        topk=Key(int, 20, doc="peaks kept per image (over classes and positions)"),
        local_maximum_kernel=Key(int, 3, doc="a peak is the maximum of this k x k window"),
        score_thr=Key(float, 0.0, doc="drop detections scoring at or below"),
        max_per_img=Key(int, 20, doc="detections kept per image; -1: all"),
        nms=Key(NMS_SETTINGS, None, doc="merges the augmentations of a test-time-augmented test"),
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 16,
        loss_center: Mapping[str, Any] | nn.Module | None = None,
        loss_wh: Mapping[str, Any] | nn.Module | None = None,
        loss_offset: Mapping[str, Any] | nn.Module | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if init_cfg is None:
            init_cfg = {"type": "Normal", "layer": "Conv2d", "std": 0.01,
                        "override": {"type": "Normal", "name": "center_out", "std": 0.01, "bias_prob": 0.1}}
        super().__init__(init_cfg)
        name = type(self).__name__
        self.num_classes = num_classes
        # the settings, checked against the declarations above (unknown keys and wrong types refused),
        # over the declared defaults
        train_cfg = checked(self, "train_cfg", train_cfg, where=name) or {}
        test_cfg = checked(self, "test_cfg", test_cfg, where=name) or {}
        self.train_cfg = {**self.train_settings.defaults(), **train_cfg}
        self.test_cfg = {**self.test_settings.defaults(), **test_cfg}
        self.center_conv, self.center_out = self._branch(in_channels, feat_channels, num_classes)
        self.wh_conv, self.wh_out = self._branch(in_channels, feat_channels, 2)
        self.offset_conv, self.offset_out = self._branch(in_channels, feat_channels, 2)
        self.loss_center = detcore.build("loss", loss_center or {"type": "GaussianFocalLoss"},
                                         where=f"{name}.loss_center")
        self.loss_wh = detcore.build("loss", loss_wh or {"type": "L1Loss", "loss_weight": 0.1},
                                     where=f"{name}.loss_wh")
        self.loss_offset = detcore.build("loss", loss_offset or {"type": "L1Loss"},
                                         where=f"{name}.loss_offset")

    @staticmethod
    def _branch(in_channels: int, feat_channels: int, out_channels: int) -> tuple[nn.Module, nn.Module]:
        return ConvModule(in_channels, feat_channels, 3, padding=1), nn.Conv2d(feat_channels, out_channels, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        heat = [self.center_out(self.center_conv(x)) for x in feats[:1]]
        wh = [self.wh_out(self.wh_conv(x)) for x in feats[:1]]
        offset = [self.offset_out(self.offset_conv(x)) for x in feats[:1]]
        return heat, wh, offset

    # -- training: BaseDenseHead.loss calls loss_by_feat(*forward(feats), gt_instances, img_metas, ...)

    def loss_by_feat(
        self,
        center_heatmaps: list[torch.Tensor],
        wh_preds: list[torch.Tensor],
        offset_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss_center``, ``loss_wh`` and ``loss_offset`` (ignored boxes are not used)."""
        heat = center_heatmaps[0]
        target = self.get_targets(gt_instances, heat.shape, img_metas[0]["batch_input_shape"])
        center_target, wh_target, offset_target, weight = target
        num_peaks = max(1.0, float(weight[:, 0].eq(1).sum()))
        pred = heat.sigmoid().clamp(1e-4, 1 - 1e-4)
        return {
            "loss_center": self.loss_center(pred, center_target, avg_factor=num_peaks),
            "loss_wh": self.loss_wh(wh_preds[0], wh_target, weight, avg_factor=num_peaks * 2),
            "loss_offset": self.loss_offset(offset_preds[0], offset_target, weight, avg_factor=num_peaks * 2),
        }

    def get_targets(
        self, gt_instances: Sequence[Instances], heat_shape: torch.Size, batch_input_shape: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Targets on the feature map: heatmaps ``(B, C, h, w)``, sizes and offsets ``(B, 2, h, w)``
        and their weights ``(B, 2, h, w)`` (1 at each object's center cell). Ground-truth boxes are in
        padded input pixels (``batch_input_shape``), so the feature map covers exactly that area."""
        batch, _, feat_h, feat_w = heat_shape
        ratio_w = feat_w / batch_input_shape[1]
        ratio_h = feat_h / batch_input_shape[0]
        center = torch.zeros(heat_shape)
        wh = torch.zeros(batch, 2, feat_h, feat_w)
        offset = torch.zeros(batch, 2, feat_h, feat_w)
        weight = torch.zeros(batch, 2, feat_h, feat_w)
        for i, gt in enumerate(gt_instances):
            for box, label in zip(gt.bboxes.tolist(), gt.labels.tolist()):
                cx, cy = (box[0] + box[2]) / 2 * ratio_w, (box[1] + box[3]) / 2 * ratio_h
                x, y = min(int(cx), feat_w - 1), min(int(cy), feat_h - 1)
                w, h = (box[2] - box[0]) * ratio_w, (box[3] - box[1]) * ratio_h
                radius = max(0, int(gaussian_radius((h, w), self.train_cfg["min_overlap"])))
                gen_gaussian_target(center[i, label], (x, y), radius)
                wh[i, :, y, x] = torch.tensor([w, h])
                offset[i, :, y, x] = torch.tensor([cx - x, cy - y])
                weight[i, :, y, x] = 1
        device = gt_instances[0].bboxes.device if gt_instances else None
        return center.to(device), wh.to(device), offset.to(device), weight.to(device)

    # -- inference: BaseDenseHead.predict calls predict_by_feat(*forward(feats), img_metas=..., rescale=...)

    def predict_by_feat(
        self,
        center_heatmaps: list[torch.Tensor],
        wh_preds: list[torch.Tensor],
        offset_preds: list[torch.Tensor],
        img_metas: Sequence[dict] | None = None,
        cfg: Mapping[str, Any] | None = None,
        rescale: bool = True,
        with_nms: bool = True,
    ) -> list[Instances]:
        """One ``Instances`` per image: ``bboxes (K, 4)`` xyxy (original-image pixels with ``rescale``),
        ``scores (K,)``, ``labels (K,)``. The heatmap's local maxima replace NMS; ``with_nms=False``
        (test-time augmentation) returns ``scores (K, num_classes)``, the peak's score in its class's
        column, for the detector's ``multiclass_nms`` over all augmentations."""
        if img_metas is None:
            raise ValueError(f"{type(self).__name__}.predict_by_feat: 'img_metas' is required")
        cfg = self.test_cfg if cfg is None else cfg
        heat = get_local_maximum(center_heatmaps[0].detach().sigmoid(), cfg["local_maximum_kernel"])
        feat_h, feat_w = heat.shape[-2:]
        topk = min(int(cfg["topk"]), heat[0].numel())
        scores, inds, labels, ys, xs = get_topk_from_heatmap(heat, k=topk)
        wh = transpose_and_gather_feat(wh_preds[0].detach(), inds)
        offset = transpose_and_gather_feat(offset_preds[0].detach(), inds)
        results = []
        for i, meta in enumerate(img_metas):
            pad_h, pad_w = meta["batch_input_shape"][:2]
            cx = (xs[i] + offset[i, :, 0]) * (pad_w / feat_w)
            cy = (ys[i] + offset[i, :, 1]) * (pad_h / feat_h)
            w, h = wh[i, :, 0] * (pad_w / feat_w), wh[i, :, 1] * (pad_h / feat_h)
            bboxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
            bboxes = clip_boxes(bboxes, meta["img_shape"])  # boxes stay inside the unpadded image
            keep = scores[i] > float(cfg["score_thr"])
            det = Instances(bboxes=bboxes[keep], scores=scores[i][keep], labels=labels[i][keep])
            if not with_nms:
                per_class = det.scores.new_zeros(len(det), self.num_classes)
                per_class[torch.arange(len(det)), det.labels] = det.scores
                det = Instances(bboxes=det.bboxes, scores=per_class)
            # rescale (divide by scale_factor); no NMS: the local maxima already are the detections
            det = self._bbox_post_process(det, cfg, meta, rescale=rescale, with_nms=False)
            max_per_img = int(cfg["max_per_img"])
            results.append(det[:max_per_img] if max_per_img > 0 else det)
        return results


# -- the plugin's hooks (the module named by the entry point in the `detcore.plugins` group) ----------

@hookimpl
def detcore_register_backbones() -> Mapping[str, Any]:
    return {"TinyBackbone": TinyBackbone}


@hookimpl
def detcore_register_dense_heads() -> Mapping[str, Any]:
    return {"TinyCenterHead": TinyCenterHead}
