"""``GridRoIHead``: Faster R-CNN's RoI stage with the box regression replaced by :class:`GridHead`.

Training (reference 2.x): proposals are assigned and sampled as in :class:`StandardRoIHead`, the box
head classifies the sampled RoIs (``loss_cls``, ``acc``; the reference's box head has no regressor,
``with_reg = false``). The positives are then jittered (centre moved by up to ``+-0.15`` of the size,
width and height scaled by ``1 +- 0.15``, clipped to the image), at most ``max_num_grid`` of all
images' positives are drawn at random, their ``grid_roi_extractor`` features (14x14) go through the
grid head, and ``loss_grid`` compares the heatmaps with the targets of the jittered boxes.

Test: the box branch scores the proposals and ``multiclass_nms`` keeps the detections (the proposals'
boxes, since nothing regresses them); the grid head then relocates every kept box from its heatmaps;
the boxes are clipped to the image and, with ``rescale``, divided by ``scale_factor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from detcore.models.roi_heads.base_roi_head import proposal_boxes
from detcore.models.roi_heads.standard_roi_head import StandardRoIHead
from detcore.models.task_utils.sampling_result import SamplingResult
from detcore.models.utils import bbox2roi
from detcore.registry import build
from detcore.settings import Key
from detcore.structures.boxes import scale_factor_tensor
from detcore.structures.instances import Instances


def random_jitter(
    bboxes: torch.Tensor, img_shape: Sequence[int] | None, amplitude: float = 0.15
) -> torch.Tensor:
    """Boxes ``(N, 4)`` xyxy with their centres moved by ``U(-a, a)`` times their width / height and
    their width / height scaled by ``1 + U(-a, a)``, then clipped to ``[0, W - 1] x [0, H - 1]`` of
    ``img_shape`` ``(H, W, ...)`` (no clipping when ``None``). A new tensor; the global RNG draws."""
    offsets = bboxes.new_empty(bboxes.shape[0], 4).uniform_(-amplitude, amplitude)
    cxcy = (bboxes[:, :2] + bboxes[:, 2:]) / 2
    wh = (bboxes[:, 2:] - bboxes[:, :2]).abs()
    new_cxcy = cxcy + wh * offsets[:, :2]
    new_wh = wh * (1 + offsets[:, 2:])
    out = torch.cat([new_cxcy - new_wh / 2, new_cxcy + new_wh / 2], dim=1)
    if img_shape is not None:
        out[:, 0::2] = out[:, 0::2].clamp(min=0, max=img_shape[1] - 1)
        out[:, 1::2] = out[:, 1::2].clamp(min=0, max=img_shape[0] - 1)
    return out


class GridRoIHead(StandardRoIHead):
    """Args: ``grid_roi_extractor`` (kind ``roi_extractor``; ``None`` shares the box extractor),
    ``grid_head`` (a :class:`GridHead` table), then :class:`StandardRoIHead`'s (no mask branch).

    ``train_cfg`` adds ``pos_radius`` (heatmap target radius, whole-map pixels) and ``max_num_grid``
    (positives per batch through the grid head)."""

    component_kinds = {"grid_roi_extractor": "roi_extractor", "grid_head": "roi_head"}
    train_settings = StandardRoIHead.train_settings.extend(
        pos_radius=Key(int, 1, doc="radius of a grid point's positive disc on the heatmap"),
        max_num_grid=Key(int, 192, doc="positive RoIs of the batch sent through the grid head"),
    )

    def __init__(
        self,
        grid_roi_extractor: Mapping[str, Any] | None,
        grid_head: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        if grid_head is None:
            raise ValueError(f"{name}: a grid_head table is required")
        if kwargs.get("mask_head") is not None:
            raise ValueError(f"{name}: a mask branch is not supported (Grid R-CNN detects boxes only)")
        super().__init__(**kwargs)
        if not self.with_bbox:
            raise ValueError(f"{name}: needs the bbox branch (bbox_roi_extractor, bbox_head)")
        if grid_roi_extractor is not None:
            self.grid_roi_extractor = build(
                "roi_extractor", grid_roi_extractor, where=f"{name}.grid_roi_extractor"
            )
            self.share_roi_extractor = False
        else:
            self.grid_roi_extractor = self.bbox_roi_extractor
            self.share_roi_extractor = True
        self.grid_head = build("roi_head", grid_head, where=f"{name}.grid_head")

    def _grid_forward(self, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> dict[str, torch.Tensor]:
        """RoIs ``(K, 5)`` -> the grid head's ``{"fused", "unfused"}`` heatmaps ``(K, P, 2S, 2S)``."""
        grid_feats = self.grid_roi_extractor(feats[: self.grid_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            grid_feats = self.shared_head(grid_feats)
        return self.grid_head(grid_feats)

    # -- training ---------------------------------------------------------------------------------

    def grid_loss(
        self,
        feats: Sequence[torch.Tensor],
        sampling_results: Sequence[SamplingResult],
        img_metas: Sequence[Mapping[str, Any]],
    ) -> dict[str, torch.Tensor]:
        """``{"loss_grid"}`` on the jittered positives (empty without positives)."""
        jittered = [
            random_jitter(res.pos_bboxes, meta.get("img_shape"))
            for res, meta in zip(sampling_results, img_metas)
        ]
        rois = bbox2roi(jittered)
        if rois.shape[0] == 0:
            return {}
        gt_bboxes = torch.cat([res.pos_gt_bboxes for res in sampling_results])
        max_num = int(self.train_cfg.get("max_num_grid", 192))
        keep = torch.randperm(rois.shape[0])[:max_num].to(rois.device)
        rois, gt_bboxes = rois[keep], gt_bboxes[keep]
        grid_pred = self._grid_forward(feats, rois)
        targets = self.grid_head.get_targets(rois[:, 1:], gt_bboxes, int(self.train_cfg.get("pos_radius", 1)))
        return self.grid_head.loss(grid_pred, targets.to(grid_pred["fused"].dtype))

    def loss(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Sequence[Instances | torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"loss_cls", "acc", "loss_grid"}`` (+ ``"loss_bbox"`` if the box head regresses); arguments
        as :meth:`StandardRoIHead.loss`."""
        sampling_results = self.sample(feats, proposals, gt_instances, gt_ignored_instances)
        rois = bbox2roi([res.bboxes for res in sampling_results])
        bbox_results = self._bbox_forward(feats, rois)
        out = self.bbox_head.loss_and_target(
            bbox_results["cls_score"], bbox_results["bbox_pred"], rois, sampling_results, self.train_cfg
        )
        losses = dict(out["loss_bbox"])
        losses.update(self.grid_loss(feats, sampling_results, img_metas))
        return losses

    # -- inference --------------------------------------------------------------------------------

    def predict_bbox(
        self,
        feats: Sequence[torch.Tensor],
        img_metas: Sequence[dict],
        proposals: Sequence[Instances | torch.Tensor],
        rcnn_test_cfg: Mapping[str, Any] | None,
        rescale: bool = False,
    ) -> list[Instances]:
        """Box detections per image (``bboxes`` ``(K, 4)``, ``scores``, ``labels``), the boxes located
        by the grid head."""
        proposal_boxes(proposals, f"{type(self).__name__}.predict")
        results = super().predict_bbox(feats, img_metas, proposals, rcnn_test_cfg, rescale=False)
        rois = bbox2roi([r.bboxes for r in results])
        if rois.shape[0] > 0:
            heatmaps = self._grid_forward(feats, rois)["fused"]
            boxes = self.grid_head.decode(rois[:, 1:], heatmaps).split([len(r.bboxes) for r in results])
            for res, b, meta in zip(results, boxes, img_metas):
                h, w = meta["img_shape"][:2]
                b = torch.stack(
                    [b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)],
                    dim=1,
                )
                res.bboxes = b
        if rescale:
            for res, meta in zip(results, img_metas):
                if len(res.bboxes):
                    res.bboxes = res.bboxes / scale_factor_tensor(meta["scale_factor"], res.bboxes)
        return results
