"""Throughput of the standard COCO-style training pipeline on shapes images at COCO size.

Pipeline: LoadImageFromFile -> LoadAnnotations -> Resize(1333x800, keep_ratio) -> RandomFlip(0.5)
-> Normalize -> Pad(32) -> PackDetInputs, batched by ``collate`` (batch 2). Images are generated
as 640x480 (a typical COCO size) JPEGs, so every image is resized to 1066x800 (padded 1088x800).

Usage: ``python benchmarks/data.py [--images 64] [--workers 0 1 2] [--batch-size 2]``
Prints images per second for each worker count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from detcore.data import build_dataloader, build_dataset
from detcore.data.shapes import generate_shapes

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=[1333, 800], keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **NORM),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "detcore-bench-shapes"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = generate_shapes(
        args.root, num_train=args.images, num_val=1, seed=0, image_size=(480, 640), max_size=200
    )
    ds = build_dataset(
        dict(
            type="CocoDataset", ann_file=paths["train_ann"], img_prefix=paths["train_img"], pipeline=PIPELINE
        )
    )
    sample = ds[0]
    print(
        f"{len(ds)} images {sample['img_meta']['ori_shape'][:2]} -> "
        f"resized {sample['img_meta']['img_shape'][:2]}, "
        f"padded {tuple(sample['img'].shape[1:])}; batch size {args.batch_size}; torch threads 1; "
        f"cpu count {os.cpu_count()}"
    )
    for workers in args.workers:
        loader = build_dataloader(ds, args.batch_size, workers, seed=0, pad_size_divisor=32)
        it = iter(loader)
        next(it)  # warm-up (worker start)
        n = 0
        t0 = time.perf_counter()
        for batch in it:
            n += batch["imgs"].shape[0]
        dt = time.perf_counter() - t0
        print(
            f"workers={workers}: {n / dt:7.1f} images/s ({n} images in {dt:.2f} s), "
            f"batch {tuple(batch['imgs'].shape)}"
        )


if __name__ == "__main__":
    main()
