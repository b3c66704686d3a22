"""Greedy NMS and Soft-NMS in plain PyTorch.

Boxes are (N, 4) xyxy; area is (x2 - x1) * (y2 - y1) (no +1). A box is suppressed when its IoU with a
kept, higher-scored box is strictly greater than the threshold; equal scores keep the lower index first.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

_BLOCK = 256
SOFT_NMS_METHODS = {"naive": 0, "linear": 1, "gaussian": 2}


def _pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (P, 4) against (Q, 4) boxes, written with the same arithmetic as the native kernels."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(
        min=0
    )
    h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])).clamp(
        min=0
    )
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices (long) of the boxes kept by greedy NMS, by descending score.

    Works block by block in score order: a block is first suppressed by the boxes kept in earlier blocks,
    then the greedy order inside the block is resolved as the fixed point of
    ``keep_i = alive_i and not any(keep_j and iou_ji > thr for j < i)``, which the iteration reaches
    (entry i is final after i + 1 rounds, and usually far sooner).
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.detach()
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    kept_boxes = sorted_boxes[:0]
    for start in range(0, n, _BLOCK):
        blk = sorted_boxes[start : start + _BLOCK]
        alive = torch.ones(blk.shape[0], dtype=torch.bool, device=boxes.device)
        for k0 in range(0, kept_boxes.shape[0], 4096):
            alive &= ~(_pairwise_iou(blk, kept_boxes[k0 : k0 + 4096]) > iou_threshold).any(dim=1)
        # suppress[j, i]: j comes before i in score order and overlaps it too much
        suppress = (_pairwise_iou(blk, blk) > iou_threshold).triu(diagonal=1)
        cur = alive
        while True:
            nxt = alive & ~(suppress & cur[:, None]).any(dim=0)
            if torch.equal(nxt, cur):
                break
            cur = nxt
        keep[start : start + blk.shape[0]] = cur
        kept_boxes = torch.cat([kept_boxes, blk[cur]])
    return order[keep]


def soft_nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, sigma: float, min_score: float, method: str
) -> Tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al. 2017): returns (dets (K, 5) xyxy + decayed score, keep (K,) long).

    Repeatedly takes the highest-scored remaining box (ties: lowest original index), decays the scores
    of the others by ``1 - iou`` when ``iou > iou_threshold`` (linear), ``exp(-iou^2 / sigma)``
    (gaussian) or to zero when ``iou > iou_threshold`` (naive), and drops boxes whose score falls below
    ``min_score`` (boxes that start below it are never output). The output is in selection order.
    """
    code = SOFT_NMS_METHODS[method]
    boxes = boxes.detach()
    sc = scores.detach().clone()
    remaining = torch.arange(boxes.shape[0], device=boxes.device)
    remaining = remaining[sc >= min_score]
    picked = []
    picked_scores = []
    while remaining.numel() > 0:
        i = int(torch.argmax(sc[remaining]))
        sel = remaining[i]
        picked.append(sel)
        picked_scores.append(sc[sel])
        remaining = torch.cat([remaining[:i], remaining[i + 1 :]])
        if remaining.numel() == 0:
            break
        iou = _pairwise_iou(boxes[sel][None], boxes[remaining])[0]
        if code == 1:
            weight = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        elif code == 2:
            weight = torch.exp(-(iou * iou) / sigma)
        else:
            weight = torch.where(iou > iou_threshold, torch.zeros_like(iou), torch.ones_like(iou))
        sc[remaining] = sc[remaining] * weight
        remaining = remaining[sc[remaining] >= min_score]
    if not picked:
        return boxes.new_zeros((0, 5)), torch.empty(0, dtype=torch.long, device=boxes.device)
    keep = torch.stack(picked)
    dets = torch.cat([boxes[keep], torch.stack(picked_scores)[:, None]], dim=1)
    return dets, keep
