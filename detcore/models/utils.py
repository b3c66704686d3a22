"""Small helpers shared by heads: mapping over images, splitting targets by level, un-subsetting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Callable

import torch
import torch.distributed as dist


def multi_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[list, ...]:
    """Call ``func`` on zipped ``args`` (fixed ``kwargs``); returns one list per output of ``func``."""
    pfunc = partial(func, **kwargs) if kwargs else func
    return tuple(map(list, zip(*map(pfunc, *args))))


def images_to_levels(target: Sequence[torch.Tensor], num_levels: Sequence[int]) -> list[torch.Tensor]:
    """Per-image targets ``[(N, ...)] * B`` -> per-level ``[(B, n_l, ...)]`` with ``sum(n_l) == N``."""
    stacked = torch.stack(list(target), 0)
    out, start = [], 0
    for n in num_levels:
        out.append(stacked[:, start : start + n])
        start += n
    return out


def unmap(data: torch.Tensor, count: int, inds: torch.Tensor, fill: float = 0) -> torch.Tensor:
    """Scatter ``data`` (one row per true entry of the bool mask ``inds``) back into ``count`` rows."""
    mask = inds.to(torch.bool)
    ret = data.new_full((count,) + tuple(data.size()[1:]), fill)
    ret[mask] = data
    return ret


def anchor_inside_flags(
    flat_anchors: torch.Tensor, valid_flags: torch.Tensor, img_shape: Sequence[int], allowed_border: float = 0
) -> torch.Tensor:
    """Valid anchors that lie inside the image, up to ``allowed_border`` pixels out (< 0: no check)."""
    img_h, img_w = img_shape[:2]
    if allowed_border < 0:
        return valid_flags
    return (
        valid_flags
        & (flat_anchors[:, 0] >= -allowed_border)
        & (flat_anchors[:, 1] >= -allowed_border)
        & (flat_anchors[:, 2] < img_w + allowed_border)
        & (flat_anchors[:, 3] < img_h + allowed_border)
    )


def select_single_mlvl(mlvl_tensors: Sequence[torch.Tensor], batch_id: int, detach: bool = True) -> list:
    """Image ``batch_id``'s slice of each level's ``(B, ...)`` tensor."""
    return [t[batch_id].detach() if detach else t[batch_id] for t in mlvl_tensors]


def filter_scores_and_topk(
    scores: torch.Tensor,
    score_thr: float,
    topk: int,
    results: Mapping | Sequence | torch.Tensor | None = None,
) -> tuple:
    """Keep entries of ``scores`` ``(N, C)`` above ``score_thr``, the ``topk`` best.

    Returns ``(scores (K,), labels (K,), keep_idxs (K,), filtered results)``; ``results`` (dict, list
    or tensor with N rows) are indexed by ``keep_idxs``.
    """
    valid_mask = scores > score_thr
    scores = scores[valid_mask]
    valid_idxs = torch.nonzero(valid_mask)
    num_topk = min(topk, valid_idxs.size(0))
    scores, idxs = scores.sort(descending=True)
    scores = scores[:num_topk]
    keep_idxs, labels = valid_idxs[idxs[:num_topk]].unbind(dim=1)
    filtered: Any = None
    if isinstance(results, Mapping):
        filtered = {k: v[keep_idxs] for k, v in results.items()}
    elif isinstance(results, (list, tuple)):
        filtered = [r[keep_idxs] for r in results]
    elif isinstance(results, torch.Tensor):
        filtered = results[keep_idxs]
    elif results is not None:
        raise TypeError(
            f"filter_scores_and_topk: results must be a dict, list or tensor, got {type(results)}"
        )
    return scores, labels, keep_idxs, filtered


def bbox2roi(bbox_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-image boxes ``[(n_i, 4+)]`` -> rois ``(sum n_i, 5)`` with the image index first."""
    rois = []
    for img_id, bboxes in enumerate(bbox_list):
        if bboxes.size(0) > 0:
            img_inds = bboxes.new_full((bboxes.size(0), 1), img_id)
            rois.append(torch.cat([img_inds, bboxes[:, :4]], dim=-1))
        else:
            rois.append(bboxes.new_zeros((0, 5)))
    return torch.cat(rois, 0)


def roi2bbox(rois: torch.Tensor) -> list[torch.Tensor]:
    """Rois ``(K, 5)`` -> per-image boxes ``[(n_i, 4)]`` for image ids ``0..max``."""
    if rois.numel() == 0:
        return []
    img_ids = rois[:, 0].long()
    return [rois[img_ids == i, 1:] for i in range(int(img_ids.max()) + 1)]


def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over processes of a tensor (itself outside distributed runs)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor.div_(dist.get_world_size()), op=dist.ReduceOp.SUM)
    return tensor
