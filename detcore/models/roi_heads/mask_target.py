"""Mask targets: each positive RoI's gt instance mask cropped at the RoI and resized to ``mask_size``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from detcore.structures.masks import BaseMasks


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"mask_size must be an int or (h, w), got {size!r}")


def mask_target_single(
    pos_proposals: torch.Tensor,
    pos_assigned_gt_inds: torch.Tensor,
    gt_masks: BaseMasks,
    cfg: Mapping[str, Any],
) -> torch.Tensor:
    """Targets of one image.

    Args:
        pos_proposals: ``(P, 4)`` xyxy positive RoIs in input-image pixels.
        pos_assigned_gt_inds: ``(P,)`` index of each RoI's ground truth in ``gt_masks``.
        gt_masks: the image's :class:`BitmapMasks` or :class:`PolygonMasks`.
        cfg: the RoI head's train settings: ``mask_size`` (int or ``(h, w)``), optional
            ``soft_mask_target`` (keep the resampled values instead of binarising at 0.5).

    Returns:
        ``(P, h, w)`` float32 on ``pos_proposals``' device.
    """
    if "mask_size" not in cfg:
        raise KeyError("mask targets need train_cfg.rcnn.mask_size (e.g. 28)")
    mask_size = _pair(cfg["mask_size"])
    device = pos_proposals.device
    if pos_proposals.shape[0] == 0:
        return pos_proposals.new_zeros((0, *mask_size))
    if not isinstance(gt_masks, BaseMasks):
        raise TypeError(
            f"mask targets need the ground truth's masks as BitmapMasks or PolygonMasks, got "
            f"{type(gt_masks).__name__} (LoadAnnotations with_mask = true)"
        )
    # RoIs clipped to the mask canvas, as the reference does
    proposals = pos_proposals.detach().cpu().numpy().copy()
    proposals[:, [0, 2]] = np.clip(proposals[:, [0, 2]], 0, gt_masks.width)
    proposals[:, [1, 3]] = np.clip(proposals[:, [1, 3]], 0, gt_masks.height)
    inds = pos_assigned_gt_inds.detach().cpu().numpy()
    binarize = not cfg.get("soft_mask_target", False)
    targets = gt_masks.crop_and_resize(proposals, mask_size, inds=inds, device=device, binarize=binarize)
    return torch.from_numpy(np.asarray(targets.to_ndarray())).float().to(device)


def mask_target(
    pos_proposals_list: Sequence[torch.Tensor],
    pos_assigned_gt_inds_list: Sequence[torch.Tensor],
    gt_masks_list: Sequence[BaseMasks],
    cfg: Mapping[str, Any],
) -> torch.Tensor:
    """Targets of a batch: :func:`mask_target_single` per image, concatenated to ``(sum P, h, w)``."""
    targets = [
        mask_target_single(p, i, m, cfg)
        for p, i, m in zip(pos_proposals_list, pos_assigned_gt_inds_list, gt_masks_list)
    ]
    if not targets:
        return torch.zeros((0, *_pair(cfg["mask_size"])))
    return torch.cat(targets)


__all__ = ["mask_target", "mask_target_single"]
