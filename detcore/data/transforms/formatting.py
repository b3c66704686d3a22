"""Formatting: from NumPy sample dicts to the tensors the models take.

:class:`PackDetInputs` is the last transform of every pipeline; its output is the *packed sample* of
``docs/architecture.md``::

    {"img": Tensor[C, H, W] float32,
     "img_meta": dict(img_id, filename, ori_filename, ori_shape, img_shape, pad_shape, scale_factor,
                      flip, flip_direction, img_norm_cfg, ...),
     "gt_instances": Instances(bboxes=Tensor[N, 4] float32, labels=Tensor[N] long,
                               masks=BitmapMasks|PolygonMasks),
     "gt_ignored_instances": Instances(bboxes=Tensor[M, 4]),
     "gt_semantic_seg": Tensor[1, H, W] long (only when loaded),
     "proposals": Instances(bboxes=Tensor[P, 4], scores=Tensor[P]) (only when loaded)}
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from detcore.structures.instances import Instances

DEFAULT_META_KEYS = (
    "img_id",
    "filename",
    "ori_filename",
    "ori_shape",
    "img_shape",
    "pad_shape",
    "scale_factor",
    "flip",
    "flip_direction",
    "img_norm_cfg",
)


def to_tensor(data: Any) -> torch.Tensor:
    """NumPy arrays, sequences, ints and floats -> tensors."""
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, (list, tuple)):
        return torch.tensor(data)
    if isinstance(data, int):
        return torch.LongTensor([data])
    if isinstance(data, float):
        return torch.FloatTensor([data])
    raise TypeError(f"type {type(data).__name__} cannot be converted to a tensor")


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W[, C])`` -> ``float32 (C, H, W)``."""
    if img.ndim < 3:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


class PackDetInputs:
    """Pack a sample into ``img``, ``img_meta``, ``gt_instances``, ``gt_ignored_instances`` (and
    ``gt_semantic_seg``, ``proposals`` when present). ``meta_keys`` lists the sample keys copied to
    ``img_meta`` (missing ones are left out); ``img_id`` comes from ``img_info["id"]``."""

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        packed: dict[str, Any] = {"img": image_to_tensor(results["img"])}
        meta: dict[str, Any] = {}
        for key in self.meta_keys:
            if key == "img_id":
                info = results.get("img_info") or {}
                if "id" in info:
                    meta["img_id"] = info["id"]
            elif key in results:
                meta[key] = results[key]
        packed["img_meta"] = meta
        if "gt_bboxes" in results:
            bboxes = torch.from_numpy(np.asarray(results["gt_bboxes"], dtype=np.float32).reshape(-1, 4))
            labels = results.get("gt_labels")
            labels = (
                torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1))
                if labels is not None
                else torch.zeros(len(bboxes), dtype=torch.long)
            )
            gt = Instances(bboxes=bboxes, labels=labels)
            if results.get("gt_masks") is not None:
                gt.masks = results["gt_masks"]
        else:
            gt = Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        packed["gt_instances"] = gt
        ign = results.get("gt_bboxes_ignore")
        ign_t = (
            torch.from_numpy(np.asarray(ign, dtype=np.float32).reshape(-1, 4))
            if ign is not None
            else torch.zeros(0, 4)
        )
        packed["gt_ignored_instances"] = Instances(bboxes=ign_t)
        if results.get("gt_semantic_seg") is not None:
            seg = np.asarray(results["gt_semantic_seg"])
            packed["gt_semantic_seg"] = torch.from_numpy(np.ascontiguousarray(seg[None].astype(np.int64)))
        if "proposals" in results:
            props = Instances(
                bboxes=torch.from_numpy(np.asarray(results["proposals"], dtype=np.float32).reshape(-1, 4))
            )
            if "proposal_scores" in results and len(results["proposal_scores"]) == len(props):
                props.scores = torch.from_numpy(np.asarray(results["proposal_scores"], dtype=np.float32))
            packed["proposals"] = props
        return packed

    def __repr__(self) -> str:
        return f"PackDetInputs(meta_keys={self.meta_keys})"


class ToTensor:
    """Convert ``results[key]`` to a tensor for each of ``keys``."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            results[key] = to_tensor(results[key])
        return results


class ImageToTensor:
    """Convert images ``(H, W[, C])`` at ``keys`` to ``float32 (C, H, W)`` tensors."""

    def __init__(self, keys: Sequence[str] = ("img",)) -> None:
        self.keys = tuple(keys)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            results[key] = image_to_tensor(results[key])
        return results


class Transpose:
    """Transpose arrays at ``keys`` with ``order``."""

    def __init__(self, keys: Sequence[str], order: Sequence[int]) -> None:
        self.keys = tuple(keys)
        self.order = tuple(order)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            v = results[key]
            results[key] = v.permute(*self.order) if isinstance(v, torch.Tensor) else v.transpose(self.order)
        return results
