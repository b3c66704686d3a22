"""Box coders: turn boxes into regression targets and predictions back into boxes.

Boxes are ``(..., 4)`` xyxy float pixels. ``max_shape`` is ``(h, w)`` of the image (or a list of
those, one per image, for batched ``(B, N, 4k)`` inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from detcore.structures.boxes import clip_boxes, cxcywh_to_xyxy, xyxy_to_cxcywh

MaxShape = Any  # (h, w) | list of (h, w) | Tensor


def bbox2delta(
    proposals: torch.Tensor,
    gt: torch.Tensor,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Deltas ``(dx, dy, dw, dh)`` from ``proposals`` to ``gt`` (both ``(..., 4)``), normalised by
    means/stds."""
    if proposals.size() != gt.size():
        raise ValueError(
            f"bbox2delta: proposals {tuple(proposals.shape)} and gt {tuple(gt.shape)} differ in shape"
        )
    return _deltas(xyxy_to_cxcywh(proposals.float()), xyxy_to_cxcywh(gt.float()), means, stds)


def _deltas(p: torch.Tensor, g: torch.Tensor, means: Sequence[float], stds: Sequence[float]) -> torch.Tensor:
    """Normalised deltas between ``(..., 4)`` ``(cx, cy, w, h)`` proposals ``p`` and targets ``g``."""
    px, py, pw, ph = p.unbind(-1)
    gx, gy, gw, gh = g.unbind(-1)
    deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)


def delta2bbox(
    rois: torch.Tensor,
    deltas: torch.Tensor,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    max_shape: MaxShape | None = None,
    wh_ratio_clip: float = 16 / 1000,
    clip_border: bool = True,
    add_ctr_clamp: bool = False,
    ctr_clamp: float = 32,
) -> torch.Tensor:
    """Apply deltas ``(N, 4k)`` (k classes) to ``rois`` ``(N, 4)``; returns ``(N, 4k)`` boxes.

    Batched inputs ``(B, N, 4k)`` with rois ``(B, N, 4)`` are accepted too. ``dw``/``dh`` are clamped to
    ``|log(wh_ratio_clip)|``; with ``add_ctr_clamp`` the centre shift is clamped to ``ctr_clamp`` pixels
    (and ``dw``/``dh`` only from above).
    """
    if deltas.dim() == 3:
        b, n = deltas.shape[:2]
        if rois.shape[:2] != (b, n):
            raise ValueError(
                f"delta2bbox: rois {tuple(rois.shape)} do not match deltas {tuple(deltas.shape)}"
            )
        out = delta2bbox(
            rois.reshape(-1, 4),
            deltas.reshape(b * n, -1),
            means,
            stds,
            None,
            wh_ratio_clip,
            clip_border,
            add_ctr_clamp,
            ctr_clamp,
        ).view(b, n, -1)
        return clip_boxes(out, max_shape) if clip_border and max_shape is not None else out
    num_bboxes, num_classes = deltas.size(0), deltas.size(1) // 4
    if num_bboxes == 0:
        return deltas
    deltas = deltas.reshape(-1, 4)
    denorm = deltas * deltas.new_tensor(stds).view(1, -1) + deltas.new_tensor(means).view(1, -1)
    dxy, dwh = denorm[:, :2], denorm[:, 2:]
    pxy, pwh = xyxy_to_cxcywh(rois.repeat(1, num_classes).reshape(-1, 4)).split(2, dim=-1)
    dxy_wh = pwh * dxy
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    if add_ctr_clamp:
        dxy_wh = torch.clamp(dxy_wh, max=ctr_clamp, min=-ctr_clamp)
        dwh = torch.clamp(dwh, max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    bboxes = cxcywh_to_xyxy(torch.cat([gxy, gwh], dim=-1))
    if clip_border and max_shape is not None:
        bboxes = clip_boxes(bboxes, max_shape)
    return bboxes.reshape(num_bboxes, -1)


class DeltaXYWHBBoxCoder:
    """Deltas ``((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph))``, normalised by
    ``target_means``/``target_stds``; widths are ``x2 - x1`` (no +1)."""

    def __init__(
        self,
        target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        clip_border: bool = True,
        add_ctr_clamp: bool = False,
        ctr_clamp: float = 32,
    ) -> None:
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp
        self.encode_size = 4

    def encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """Targets ``(N, 4)`` that turn ``bboxes`` ``(N, 4)`` into ``gt_bboxes`` ``(N, 4)``."""
        if bboxes.size(0) != gt_bboxes.size(0) or bboxes.size(-1) != 4 or gt_bboxes.size(-1) != 4:
            raise ValueError(
                f"encode: bboxes {tuple(bboxes.shape)} and gt_bboxes {tuple(gt_bboxes.shape)} "
                "must both be (N, 4)"
            )
        return self._encode(bboxes, gt_bboxes)

    def decode(
        self,
        bboxes: torch.Tensor,
        pred_bboxes: torch.Tensor,
        max_shape: MaxShape | None = None,
        wh_ratio_clip: float = 16 / 1000,
    ) -> torch.Tensor:
        """Boxes ``(N, 4k)`` (or ``(B, N, 4k)``) from deltas applied to ``bboxes`` ``(N, 4)``
        (or ``(B, N, 4)``)."""
        if pred_bboxes.size(0) != bboxes.size(0) or (
            pred_bboxes.dim() == 3 and pred_bboxes.size(1) != bboxes.size(1)
        ):
            raise ValueError(
                f"decode: pred_bboxes {tuple(pred_bboxes.shape)} do not match bboxes {tuple(bboxes.shape)}"
            )
        return self._decode(bboxes, pred_bboxes, max_shape, wh_ratio_clip)

    def _encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        return bbox2delta(bboxes, gt_bboxes, self.means, self.stds)

    def _decode(self, bboxes: torch.Tensor, pred_bboxes: torch.Tensor, max_shape: MaxShape | None,
                wh_ratio_clip: float) -> torch.Tensor:
        return delta2bbox(
            bboxes, pred_bboxes, self.means, self.stds, max_shape, wh_ratio_clip, self.clip_border,
            self.add_ctr_clamp, self.ctr_clamp,
        )


def legacy_bbox2delta(
    proposals: torch.Tensor,
    gt: torch.Tensor,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """:func:`bbox2delta` with the 1.x ``+1`` width/height convention."""
    return _deltas(_plus_one_wh(proposals), _plus_one_wh(gt), means, stds)


def _plus_one_wh(boxes: torch.Tensor) -> torch.Tensor:
    """``(cx, cy, w + 1, h + 1)`` of ``(..., 4)`` xyxy boxes (the 1.x sizes)."""
    cxcywh = xyxy_to_cxcywh(boxes.float())
    return torch.cat([cxcywh[..., :2], cxcywh[..., 2:] + 1.0], dim=-1)


def legacy_delta2bbox(
    rois: torch.Tensor,
    deltas: torch.Tensor,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    max_shape: MaxShape | None = None,
    wh_ratio_clip: float = 16 / 1000,
) -> torch.Tensor:
    """:func:`delta2bbox` with the 1.x ``+1`` convention; clips to ``[0, w - 1]``/``[0, h - 1]``."""
    reps = deltas.size(1) // 4
    denorm = deltas * deltas.new_tensor(stds).repeat(reps).view(1, -1) + deltas.new_tensor(means).repeat(
        reps
    ).view(1, -1)
    dx, dy, dw, dh = denorm[:, 0::4], denorm[:, 1::4], denorm[:, 2::4], denorm[:, 3::4]
    max_ratio = float(np.abs(np.log(wh_ratio_clip)))
    dw = dw.clamp(min=-max_ratio, max=max_ratio)
    dh = dh.clamp(min=-max_ratio, max=max_ratio)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
    py = ((rois[:, 1] + rois[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
    pw = (rois[:, 2] - rois[:, 0] + 1.0).unsqueeze(1).expand_as(dw)
    ph = (rois[:, 3] - rois[:, 1] + 1.0).unsqueeze(1).expand_as(dh)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    x1, y1 = gx - gw * 0.5 + 0.5, gy - gh * 0.5 + 0.5
    x2, y2 = gx + gw * 0.5 - 0.5, gy + gh * 0.5 - 0.5
    if max_shape is not None:
        x1 = x1.clamp(min=0, max=max_shape[1] - 1)
        y1 = y1.clamp(min=0, max=max_shape[0] - 1)
        x2 = x2.clamp(min=0, max=max_shape[1] - 1)
        y2 = y2.clamp(min=0, max=max_shape[0] - 1)
    return torch.stack([x1, y1, x2, y2], dim=-1).view_as(deltas)


class LegacyDeltaXYWHBBoxCoder(DeltaXYWHBBoxCoder):
    """:class:`DeltaXYWHBBoxCoder` with the 1.x ``+1`` convention (widths ``x2 - x1 + 1``; decoded boxes
    clipped to ``[0, w - 1]`` / ``[0, h - 1]``)."""

    def __init__(
        self,
        target_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(target_means, target_stds)

    def _encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        return legacy_bbox2delta(bboxes, gt_bboxes, self.means, self.stds)

    def _decode(self, bboxes: torch.Tensor, pred_bboxes: torch.Tensor, max_shape: MaxShape | None,
                wh_ratio_clip: float) -> torch.Tensor:
        return legacy_delta2bbox(bboxes, pred_bboxes, self.means, self.stds, max_shape, wh_ratio_clip)


def bbox2distance(
    points: torch.Tensor, bbox: torch.Tensor, max_dis: float | None = None, eps: float = 0.1
) -> torch.Tensor:
    """Distances ``(left, top, right, bottom)`` from ``points`` ``(N, 2)`` to the sides of ``bbox``
    ``(N, 4)``; with ``max_dis`` clamped to ``[0, max_dis - eps]``."""
    left = points[..., 0] - bbox[..., 0]
    top = points[..., 1] - bbox[..., 1]
    right = bbox[..., 2] - points[..., 0]
    bottom = bbox[..., 3] - points[..., 1]
    if max_dis is not None:
        left, top, right, bottom = (d.clamp(min=0, max=max_dis - eps) for d in (left, top, right, bottom))
    return torch.stack([left, top, right, bottom], -1)


def distance2bbox(
    points: torch.Tensor, distance: torch.Tensor, max_shape: MaxShape | None = None
) -> torch.Tensor:
    """Boxes from ``points`` ``(..., 2)`` and distances ``(..., 4)`` (left, top, right, bottom)."""
    x1 = points[..., 0] - distance[..., 0]
    y1 = points[..., 1] - distance[..., 1]
    x2 = points[..., 0] + distance[..., 2]
    y2 = points[..., 1] + distance[..., 3]
    bboxes = torch.stack([x1, y1, x2, y2], -1)
    if max_shape is not None:
        bboxes = clip_boxes(bboxes, max_shape)
    return bboxes


class DistancePointBBoxCoder:
    """Points and the distances to a box's four sides (FCOS, GFL, ...)."""

    def __init__(self, clip_border: bool = True) -> None:
        self.clip_border = clip_border
        self.encode_size = 4

    def encode(
        self, points: torch.Tensor, gt_bboxes: torch.Tensor, max_dis: float | None = None, eps: float = 0.1
    ) -> torch.Tensor:
        """Distances ``(N, 4)`` from ``points`` ``(N, 2)`` to ``gt_bboxes`` ``(N, 4)``."""
        if points.size(0) != gt_bboxes.size(0) or points.size(-1) != 2 or gt_bboxes.size(-1) != 4:
            raise ValueError(
                f"encode: points {tuple(points.shape)} must be (N, 2) and gt_bboxes "
                f"{tuple(gt_bboxes.shape)} (N, 4)"
            )
        return bbox2distance(points, gt_bboxes, max_dis, eps)

    def decode(
        self, points: torch.Tensor, pred_bboxes: torch.Tensor, max_shape: MaxShape | None = None
    ) -> torch.Tensor:
        """Boxes from ``points`` ``(N, 2)``/``(B, N, 2)`` and distances ``(N, 4)``/``(B, N, 4)``."""
        if points.size(0) != pred_bboxes.size(0) or points.size(-1) != 2 or pred_bboxes.size(-1) != 4:
            raise ValueError(
                f"decode: points {tuple(points.shape)} and distances {tuple(pred_bboxes.shape)} "
                "must be (..., 2) and (..., 4) with the same leading size"
            )
        return distance2bbox(points, pred_bboxes, max_shape if self.clip_border else None)


class PseudoBBoxCoder:
    """The identity coder: targets are the boxes themselves."""

    def __init__(self) -> None:
        self.encode_size = 4

    def encode(self, bboxes: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        return gt_bboxes

    def decode(self, bboxes: torch.Tensor, pred_bboxes: torch.Tensor, **_: Any) -> torch.Tensor:
        return pred_bboxes
