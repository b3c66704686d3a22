"""Inputs and output checks for head and detector tests, and config loading as the Runner checks it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from detcore.structures.instances import Instances

if TYPE_CHECKING:
    from detcore.config import Config


def load_validated_config(path: str | Path) -> Config:
    """Load a TOML config and validate it (component names and keys) as the Runner does."""
    from detcore.config import load_config, validate_config

    cfg = load_config(path)
    validate_config(cfg)
    return cfg


def check_detections(
    results: Sequence[Instances],
    img_metas: Sequence[dict[str, Any]],
    max_per_img: int,
    num_classes: int | None = None,
    min_per_img: int = 1,
    atol: float = 1e-3,
) -> None:
    """Assert the eval-mode contract of a detector on a batch.

    One :class:`Instances` per image with ``min_per_img..max_per_img`` detections: ``bboxes (n, 4)``
    inside the original image (``ori_shape``; ``atol`` pixels of rounding allowed at the right and
    bottom edges), ``scores (n,)`` sorted high to low, ``labels (n,)`` of dtype long (in
    ``[0, num_classes)`` when given). Raises ``AssertionError`` naming the image and the rule.
    """
    assert len(results) == len(img_metas), f"{len(results)} results for {len(img_metas)} images"
    for i, (res, meta) in enumerate(zip(results, img_metas)):
        where = f"image {i}"
        assert isinstance(res, Instances), f"{where}: got {type(res).__name__}, not Instances"
        n = len(res)
        expected = f"{min_per_img}..{max_per_img}"
        assert min_per_img <= n <= max_per_img, f"{where}: {n} detections, expected {expected}"
        assert tuple(res.bboxes.shape) == (n, 4), f"{where}: bboxes of shape {tuple(res.bboxes.shape)}"
        assert tuple(res.scores.shape) == (n,), f"{where}: scores of shape {tuple(res.scores.shape)}"
        assert tuple(res.labels.shape) == (n,), f"{where}: labels of shape {tuple(res.labels.shape)}"
        assert res.labels.dtype == torch.long, f"{where}: labels of dtype {res.labels.dtype}"
        if n == 0:
            continue
        if num_classes is not None:
            low, high = int(res.labels.min()), int(res.labels.max())
            assert low >= 0 and high < num_classes, f"{where}: labels {low}..{high} not in [0, {num_classes})"
        h, w = meta["ori_shape"][:2]
        xs, ys = res.bboxes[:, 0::2], res.bboxes[:, 1::2]
        inside = xs.min() >= 0 and ys.min() >= 0 and xs.max() <= w + atol and ys.max() <= h + atol
        assert bool(inside), f"{where}: boxes leave the original {h}x{w} image: {res.bboxes.tolist()}"
        assert bool((res.scores[:-1] >= res.scores[1:]).all()), f"{where}: scores not sorted high to low"


def two_image_batch() -> dict:
    """A collated batch of two random 96x128 images with known metadata and ground truth, for head and
    detector tests: image 0 was resized 2x from 48x64 (two boxes, labels 0 and 2), image 1 is unscaled
    90x120 padded to 96x128 (one box, label 1); no ignored boxes. Seeded, so it is the same every call."""
    generator = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 3, 96, 128, generator=generator)
    metas = [
        dict(img_shape=(96, 128, 3), pad_shape=(96, 128, 3), ori_shape=(48, 64, 3),
             scale_factor=[2.0, 2.0, 2.0, 2.0], batch_input_shape=(96, 128), flip=False),
        dict(img_shape=(90, 120, 3), pad_shape=(96, 128, 3), ori_shape=(90, 120, 3),
             scale_factor=[1.0, 1.0, 1.0, 1.0], batch_input_shape=(96, 128), flip=False),
    ]  # fmt: skip
    gts = [
        Instances(bboxes=torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 30.0, 120.0, 80.0]]),
                  labels=torch.tensor([0, 2])),
        Instances(bboxes=torch.tensor([[5.0, 5.0, 40.0, 40.0]]), labels=torch.tensor([1])),
    ]  # fmt: skip
    ignored = [Instances(bboxes=torch.zeros(0, 4)), Instances(bboxes=torch.zeros(0, 4))]
    return dict(imgs=imgs, img_metas=metas, gt_instances=gts, gt_ignored_instances=ignored)
