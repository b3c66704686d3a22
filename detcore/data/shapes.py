"""The embedded synthetic "shapes" dataset, written as real COCO JSON plus image files.

Categories (COCO ids 1, 2, 3 -> labels 0, 1, 2): ``square`` (rotated squares), ``circle``,
``triangle`` (rotated equilateral triangles). Each image (default 320x320) has a random background
(a colour gradient with noise) and 1-4 filled shapes of random colour (kept distinct from the
background), size 24-120 px and rotation. Shapes never share pixels, so every instance mask is the
exact polygon stored in the JSON (circles as 32-gons), but their boxes may overlap.

Files under ``root``::

    train/000000.jpg ...        val/000000.jpg ...
    annotations/instances_train.json, annotations/instances_val.json   (COCO, polygon segmentations)
    semantic/train/000000.png ...  semantic/val/...   (uint8: 0 background, 1 + label for shapes)
    .shapes_done.json           (the generation arguments; a later call with the same ones reuses the data)

Generation is seeded (train and val use independent streams of the same seed) and takes about a
second per hundred images.
"""

from __future__ import annotations

import json
import math
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("square", "circle", "triangle")
MARKER = ".shapes_done.json"


def default_shapes_root() -> str:
    """``$DETCORE_DATA/shapes`` if ``DETCORE_DATA`` is set, else ``~/.cache/detcore/shapes``."""
    base = os.environ.get("DETCORE_DATA")
    if base:
        return osp.join(base, "shapes")
    return osp.join(osp.expanduser("~"), ".cache", "detcore", "shapes")


def _shape_polygon(kind: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """Vertices ``(K, 2)`` of a shape of circumscribed diameter ~``size`` centred at ``(cx, cy)``."""
    if kind == "circle":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        r = size / 2
    elif kind == "square":
        t = angle + np.arange(4) * math.pi / 2 + math.pi / 4
        r = size / 2 * math.sqrt(2) / (abs(math.cos(angle)) + abs(math.sin(angle)))  # fits the box size
    elif kind == "triangle":
        t = angle + np.arange(3) * 2 * math.pi / 3 - math.pi / 2
        r = size / 2
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _background(rng: np.random.RandomState, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A linear colour gradient in a random direction plus uniform noise; returns (RGB uint8, mean colour)."""
    c0 = rng.uniform(0, 255, 3).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-80, 80, 3), 0, 255).astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    t = np.arange(w, dtype=np.float32)[None, :] * math.cos(direction) + np.arange(h, dtype=np.float32)[
        :, None
    ] * math.sin(direction)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = (c0 + (c1 - c0) * t[..., None]).astype(np.int16)
    noise = np.frombuffer(rng.bytes(h * w * 3), dtype=np.uint8).reshape(h, w, 3) % 21
    img += noise.astype(np.int16) - 10
    return np.clip(img, 0, 255).astype(np.uint8), (c0 + c1) / 2


def _one_image(rng: np.random.RandomState, h: int, w: int, max_objects: int, min_size: int, max_size: int):
    img, bg_mean = _background(rng, h, w)
    canvas = Image.fromarray(img)  # RGB
    draw = ImageDraw.Draw(canvas)
    occupied = np.zeros((h, w), dtype=bool)
    sem = np.zeros((h, w), dtype=np.uint8)
    objects = []
    n = rng.randint(1, max_objects + 1)
    for _ in range(n):
        for _attempt in range(20):
            kind_idx = rng.randint(len(CATEGORIES))
            size = rng.uniform(min_size, max_size)
            cx = rng.uniform(size / 2, w - size / 2)
            cy = rng.uniform(size / 2, h - size / 2)
            poly = _shape_polygon(CATEGORIES[kind_idx], cx, cy, size, rng.uniform(0, 2 * math.pi))
            poly[:, 0] = np.clip(poly[:, 0], 0, w)
            poly[:, 1] = np.clip(poly[:, 1], 0, h)
            m_img = Image.new("L", (w, h), 0)
            ImageDraw.Draw(m_img).polygon([tuple(p) for p in poly], fill=1)
            mask = np.asarray(m_img, dtype=bool)
            if mask.sum() < 16 or (mask & occupied).any():
                continue
            for _c in range(10):
                colour = rng.uniform(0, 255, 3)
                if np.linalg.norm(colour - bg_mean) > 90:
                    break
            draw.polygon([tuple(p) for p in poly], fill=tuple(int(c) for c in colour))
            occupied |= mask
            sem[mask] = kind_idx + 1
            objects.append((kind_idx, poly, int(mask.sum())))
            break
    return np.asarray(canvas), sem, objects


def _write_split(
    out_dir: str,
    split: str,
    num: int,
    rng: np.random.RandomState,
    image_size: tuple[int, int],
    max_objects: int,
    min_size: int,
    max_size: int,
) -> None:
    h, w = image_size
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    os.makedirs(osp.join(out_dir, "semantic", split), exist_ok=True)
    images, anns = [], []
    for i in range(num):
        rgb, sem, objects = _one_image(rng, h, w, max_objects, min_size, max_size)
        name = f"{i:06d}.jpg"
        Image.fromarray(rgb).save(osp.join(out_dir, split, name), quality=95)
        Image.fromarray(sem).save(osp.join(out_dir, "semantic", split, f"{i:06d}.png"))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        for kind_idx, poly, area in objects:
            x1, y1 = poly.min(0)
            x2, y2 = poly.max(0)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": kind_idx + 1,
                    "bbox": [
                        round(float(x1), 2),
                        round(float(y1), 2),
                        round(float(x2 - x1), 2),
                        round(float(y2 - y1), 2),
                    ],
                    "area": float(area),
                    "iscrowd": 0,
                    "segmentation": [[round(float(v), 2) for v in poly.reshape(-1)]],
                }
            )
    coco = {
        "info": {"description": f"detcore synthetic shapes, {split}"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CATEGORIES)],
    }
    os.makedirs(osp.join(out_dir, "annotations"), exist_ok=True)
    with open(osp.join(out_dir, "annotations", f"instances_{split}.json"), "w") as f:
        json.dump(coco, f)


def _paths(root: str) -> dict[str, str]:
    return {
        "root": root,
        "train_ann": osp.join(root, "annotations", "instances_train.json"),
        "val_ann": osp.join(root, "annotations", "instances_val.json"),
        "train_img": osp.join(root, "train"),
        "val_img": osp.join(root, "val"),
        "train_seg": osp.join(root, "semantic", "train"),
        "val_seg": osp.join(root, "semantic", "val"),
    }


def generate_shapes(
    root: str | None = None,
    num_train: int = 300,
    num_val: int = 100,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 320),
    max_objects: int = 4,
    min_size: int = 24,
    max_size: int = 120,
) -> dict[str, str]:
    """Write (or reuse) the shapes dataset in ``root`` and return its paths: ``root``,
    ``train_ann``/``val_ann`` (COCO JSON), ``train_img``/``val_img`` (image folders),
    ``train_seg``/``val_seg`` (semantic PNG folders).

    ``root=None`` -> ``default_shapes_root()/<key of the arguments>``. If ``root`` holds data made
    with the same arguments it is reused; otherwise it is (re)generated into a temporary folder and
    moved into place, so concurrent callers never see half-written data.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if min(h, w) < 2 * max_size:
        max_size = min(max_size, min(h, w) // 2)
    if not 0 < min_size <= max_size:
        raise ValueError(f"generate_shapes: need 0 < min_size <= max_size, got {min_size}, {max_size}")
    args = {
        "num_train": int(num_train),
        "num_val": int(num_val),
        "seed": int(seed),
        "image_size": [h, w],
        "max_objects": int(max_objects),
        "min_size": int(min_size),
        "max_size": int(max_size),
        "version": 1,
    }
    if root is None:
        root = osp.join(
            default_shapes_root(),
            f"s{seed}_n{num_train}-{num_val}_{h}x{w}_o{max_objects}_{min_size}-{max_size}",
        )
    marker = osp.join(root, MARKER)
    if osp.isfile(marker):
        with open(marker) as f:
            if json.load(f) == args:
                return _paths(root)
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shapes-tmp-", dir=parent)
    try:
        _write_split(
            tmp,
            "train",
            args["num_train"],
            np.random.RandomState([seed, 0]),
            (h, w),
            max_objects,
            min_size,
            max_size,
        )
        _write_split(
            tmp,
            "val",
            args["num_val"],
            np.random.RandomState([seed, 1]),
            (h, w),
            max_objects,
            min_size,
            max_size,
        )
        with open(osp.join(tmp, MARKER), "w") as f:
            json.dump(args, f)
        if osp.isdir(root):
            if osp.isfile(marker):
                with open(marker) as f:
                    if json.load(f) == args:  # another process finished first
                        return _paths(root)
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(tmp, root)
            print(
                f"detcore: generated the shapes data ({num_train} train / {num_val} val images) in {root} "
                "(default_shapes_root(): $DETCORE_DATA/shapes, else ~/.cache/detcore/shapes)",
                file=sys.stderr,
            )
        except OSError:
            if not (osp.isfile(marker) and json.load(open(marker)) == args):
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return _paths(root)


def shapes_info() -> dict[str, Any]:
    """The categories and the semantic-map convention."""
    return {
        "classes": CATEGORIES,
        "semantic": {"background": 0, **{c: i + 1 for i, c in enumerate(CATEGORIES)}},
    }
