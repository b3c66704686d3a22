"""Inputs and output checks for head and detector tests, and config loading as the Runner checks it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
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
    with_masks: bool = False,
) -> None:
    """Assert the eval-mode contract of a detector on a batch.

    One :class:`Instances` per image with ``min_per_img..max_per_img`` detections: ``bboxes (n, 4)``
    inside the original image (``ori_shape``; ``atol`` pixels of rounding allowed at the right and
    bottom edges), ``scores (n,)`` sorted high to low, ``labels (n,)`` of dtype long (in
    ``[0, num_classes)`` when given); with ``with_masks`` also ``masks`` bool ``(n, H, W)`` at the
    original image's size. Raises ``AssertionError`` naming the image and the rule.
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
        if with_masks:
            masks = getattr(res, "masks", None)
            assert masks is not None, f"{where}: no masks"
            assert masks.dtype == torch.bool, f"{where}: masks of dtype {masks.dtype}"
            got, want = tuple(masks.shape), (n, *meta["ori_shape"][:2])
            assert got == want, f"{where}: masks of shape {got}, not {want}"
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


def fake_batch(
    num_images: int = 2,
    img_size: tuple[int, int] | Sequence[tuple[int, int]] = (64, 64),
    num_classes: int = 3,
    boxes_per_image: int | Sequence[int] = 2,
    *,
    scale_factor: float = 1.0,
    size_divisor: int = 32,
    with_masks: bool = False,
    with_ignored: bool = False,
    seed: int = 0,
) -> dict:
    """A collated batch like the data pipeline's, of any size, for any head or detector test.

    Args:
        num_images: images in the batch.
        img_size: ``(h, w)`` of the resized images, one for all or one per image.
        num_classes: labels are drawn from ``[0, num_classes)``.
        boxes_per_image: ground-truth boxes per image (one count for all or one per image; 0 is an
            image without objects).
        scale_factor: how much the pipeline enlarged the original images (``ori_shape = img_size /
            scale_factor``; boxes are in the resized, padded input's pixels).
        size_divisor: the batch is padded (bottom and right) to the largest size rounded up to this.
        with_masks: add ``masks`` (:class:`~detcore.structures.masks.BitmapMasks` at the padded batch
            size, each object's box filled).
        with_ignored: add one ignored box per image in ``gt_ignored_instances`` (else empty ones).
        seed: the images, boxes and labels are a function of the arguments and ``seed``.

    Returns:
        ``dict(imgs (B, 3, H_pad, W_pad), img_metas, gt_instances, gt_ignored_instances)``. Every object
        is painted into its image as a rectangle whose brightness depends on its class, over weak
        noise, so a model can learn the batch. The metas have ``img_shape``, ``pad_shape``,
        ``batch_input_shape``, ``ori_shape``, ``scale_factor`` (4 values) and ``flip = False``.
    """
    from detcore.structures.masks import BitmapMasks

    if num_images < 1:
        raise ValueError(f"fake_batch: num_images must be >= 1, got {num_images}")
    if num_classes < 1:
        raise ValueError(f"fake_batch: num_classes must be >= 1, got {num_classes}")
    sizes = [tuple(img_size)] * num_images if isinstance(img_size[0], int) else [tuple(s) for s in img_size]
    counts = [boxes_per_image] * num_images if isinstance(boxes_per_image, int) else list(boxes_per_image)
    if len(sizes) != num_images or len(counts) != num_images:
        raise ValueError(
            f"fake_batch: {len(sizes)} sizes and {len(counts)} box counts for {num_images} images"
        )
    divisor = max(1, int(size_divisor))
    pad_h = -(-max(h for h, _ in sizes) // divisor) * divisor
    pad_w = -(-max(w for _, w in sizes) // divisor) * divisor
    gen = torch.Generator().manual_seed(seed)
    imgs = 0.1 * torch.randn(num_images, 3, pad_h, pad_w, generator=gen)
    metas, gts, ignored = [], [], []
    for i, ((h, w), n) in enumerate(zip(sizes, counts)):
        imgs[i, :, h:, :] = 0
        imgs[i, :, :, w:] = 0
        wh = torch.rand(n, 2, generator=gen) * 0.35 + 0.15  # 15-50 % of the image side
        size = wh * torch.tensor([w, h])
        x1y1 = torch.rand(n, 2, generator=gen) * (torch.tensor([w, h]) - size)
        bboxes = torch.cat([x1y1, x1y1 + size], dim=1).floor()
        labels = torch.randint(0, num_classes, (n,), generator=gen)
        masks = np.zeros((n, pad_h, pad_w), np.uint8)
        for j, (box, label) in enumerate(zip(bboxes.long().tolist(), labels.tolist())):
            x1, y1, x2, y2 = box
            imgs[i, :, y1:y2, x1:x2] = 1.0 + 2.0 * label / max(1, num_classes - 1)
            masks[j, y1:y2, x1:x2] = 1
        gt = Instances(bboxes=bboxes, labels=labels)
        if with_masks:
            gt.masks = BitmapMasks(masks, pad_h, pad_w)
        gts.append(gt)
        ign = torch.tensor([[0.0, 0.0, w / 8, h / 8]]) if with_ignored else torch.zeros(0, 4)
        ignored.append(Instances(bboxes=ign))
        ori = (round(h / scale_factor), round(w / scale_factor), 3)
        metas.append(dict(img_shape=(h, w, 3), pad_shape=(pad_h, pad_w, 3), ori_shape=ori,
                          scale_factor=[scale_factor] * 4, batch_input_shape=(pad_h, pad_w), flip=False))
    return dict(imgs=imgs, img_metas=metas, gt_instances=gts, gt_ignored_instances=ignored)
