"""Batching: pad the packed samples of a batch to a common size.

Input: samples as produced by ``PackDetInputs`` (see ``docs/architecture.md``). Output, the *batch*::

    {"imgs": Tensor[B, C, Hp, Wp], "img_metas": list[dict] (each with batch_input_shape = (Hp, Wp)),
     "gt_instances": list[Instances], "gt_ignored_instances": list[Instances],
     "gt_semantic_seg": Tensor[B, 1, Hp, Wp] long (padded with 255; only when every sample has it;
                        maps smaller than their image, after SegRescale, are padded to the largest map),
     "proposals": list[Instances] (only when samples carry proposals)}

``Hp, Wp`` are the largest height and width in the batch rounded up to ``pad_size_divisor``; images
are placed at the top-left corner. Samples that are ``None`` (an unreadable image in test mode, see
:mod:`detcore.data.bad_data`) are dropped. Test-time augmentation samples (lists of packed samples,
one per augmentation) give ``imgs: list[Tensor[B, C, Hp_k, Wp_k]]`` and ``img_metas: list[list[dict]]``,
one entry per augmentation ``k`` -- the detector's ``aug_test`` convention.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_LIST_KEYS = ("gt_instances", "gt_ignored_instances", "proposals")


def _pad_stack(tensors: list[torch.Tensor], divisor: int, value: float) -> torch.Tensor:
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    if divisor > 1:
        h = int(math.ceil(h / divisor)) * divisor
        w = int(math.ceil(w / divisor)) * divisor
    out = tensors[0].new_full((len(tensors), tensors[0].shape[0], h, w), value)
    for i, t in enumerate(tensors):
        out[i, :, : t.shape[-2], : t.shape[-1]] = t
    return out


def collate(samples: list[Any], pad_size_divisor: int = 1, pad_value: float = 0) -> dict[str, Any]:
    """Collate packed samples into a batch (see the module docstring)."""
    samples = [s for s in samples if s is not None]
    if samples and isinstance(samples[0], (list, tuple)):
        n_aug = len(samples[0])
        if any(len(s) != n_aug for s in samples):
            raise ValueError(
                "collate: test-time-augmentation samples have different numbers of augmentations"
            )
        per_aug = [collate([s[k] for s in samples], pad_size_divisor, pad_value) for k in range(n_aug)]
        out: dict[str, Any] = {
            "imgs": [b["imgs"] for b in per_aug],
            "img_metas": [b["img_metas"] for b in per_aug],
        }
        for key in _LIST_KEYS:
            if key in per_aug[0]:
                out[key] = [b[key] for b in per_aug]
        return out
    if not samples:
        return {
            "imgs": torch.zeros(0, 3, 0, 0),
            "img_metas": [],
            "gt_instances": [],
            "gt_ignored_instances": [],
        }
    for i, s in enumerate(samples):
        if not isinstance(s, dict) or "img" not in s or "img_meta" not in s:
            raise TypeError(
                f"collate: sample {i} is not a packed sample (a dict with 'img' and 'img_meta'); "
                f"is PackDetInputs the last transform of the pipeline? Got {type(s).__name__}"
                + (f" with keys {sorted(s)}" if isinstance(s, dict) else "")
            )
    imgs = _pad_stack([s["img"] for s in samples], pad_size_divisor, pad_value)
    batch_input_shape = (int(imgs.shape[-2]), int(imgs.shape[-1]))
    metas = []
    for s in samples:
        meta = dict(s["img_meta"])
        meta["batch_input_shape"] = batch_input_shape
        metas.append(meta)
    batch: dict[str, Any] = {"imgs": imgs, "img_metas": metas}
    from detcore.structures.instances import Instances

    for key in ("gt_instances", "gt_ignored_instances"):
        batch[key] = [s.get(key) if s.get(key) is not None else Instances() for s in samples]
    if "proposals" in samples[0]:
        batch["proposals"] = [s["proposals"] for s in samples]
    if all("gt_semantic_seg" in s for s in samples):
        segs = [s["gt_semantic_seg"] for s in samples]
        if all(g.shape[-2:] == s["img"].shape[-2:] for g, s in zip(segs, samples)):
            seg = segs[0].new_full((len(segs), segs[0].shape[0]) + batch_input_shape, 255)
            for i, g in enumerate(segs):
                seg[i, :, : g.shape[-2], : g.shape[-1]] = g
        else:  # rescaled maps (SegRescale): pad to the largest map
            seg = _pad_stack(segs, 1, 255)
        batch["gt_semantic_seg"] = seg
    return batch
