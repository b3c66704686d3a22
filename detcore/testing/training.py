"""A few optimisation steps on a fixed batch: the "it learns" check for heads and detectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def train_steps(
    model: nn.Module,
    batch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    iterations: int = 10,
    lr: float = 0.01,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    clip_grad: float | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (a detector: ``forward(imgs, img_metas, gt_instances, gt_ignored_instances)`` in
    train mode returns its losses) on ``batch`` for ``iterations`` steps, as the engine does (the total
    is the sum of every entry whose name contains ``loss``, see ``detcore.engine.loops.parse_losses``).

    ``batch`` is one collated batch or a list of them, used in turn (:func:`shapes_batches`).
    Returns the log of every step, ``{"loss": total, "<name>": value, ...}`` as floats (before the
    step's update). ``optimizer`` is ``"sgd"`` (momentum 0.9) or ``"adam"``; ``clip_grad`` clips the
    gradients' total norm. The model is left in train mode. A non-finite total stops with an
    ``AssertionError`` naming the step and the losses.
    """
    from detcore.engine.loops import parse_losses

    if iterations < 1:
        raise ValueError(f"train_steps: iterations must be >= 1, got {iterations}")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"train_steps: optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    model.train()
    batches = [batch] if isinstance(batch, Mapping) else list(batch)
    if not batches:
        raise ValueError("train_steps: no batch given")
    log = []
    for step in range(iterations):
        losses = model(**batches[step % len(batches)])
        total, log_vars = parse_losses(losses)
        assert torch.isfinite(total), f"step {step}: non-finite loss {log_vars}"
        opt.zero_grad()
        total.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        opt.step()
        log.append(log_vars)
    return log


def check_loss_falls(
    model: nn.Module,
    batch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    iterations: int = 20,
    lr: float = 0.01,
    optimizer: str = "sgd",
    keys: tuple[str, ...] = ("loss",),
    ratio: float = 0.9,
    window: int = 1,
    **train_options: Any,
) -> list[dict[str, float]]:
    """Assert that training on ``batch`` (one or a list, see :func:`train_steps`, which also takes
    ``weight_decay`` and ``clip_grad``) lowers each of ``keys`` (default the total): the mean of the
    last ``max(window, 3)`` steps is below ``ratio`` times the mean of the first ``window``. Returns
    the log of :func:`train_steps`; the ``AssertionError`` names the key and both values."""
    log = train_steps(model, batch, iterations, lr, optimizer, **train_options)
    for key in keys:
        if key not in log[0]:
            raise KeyError(f"check_loss_falls: no loss {key!r}; the model returns {sorted(log[0])}")
        first = sum(step[key] for step in log[:window]) / len(log[:window])
        tail = [step[key] for step in log[-max(window, 3):]]
        last = sum(tail) / len(tail)
        assert last < ratio * first, (
            f"{key} did not fall over {iterations} iterations: {first:.4f} -> {last:.4f} "
            f"(expected below {ratio} x the first)"
        )
    return log


def shapes_batches(
    root: str | Path,
    num_batches: int = 2,
    batch_size: int = 4,
    image_size: int = 128,
    with_mask: bool = False,
) -> list[dict[str, Any]]:
    """Collated batches of the synthetic shapes data (generated under ``root`` if absent) through the
    standard training pipeline (load, resize to ``image_size``, ImageNet normalisation, pad to 32),
    for :func:`check_loss_falls`. ``with_mask`` adds the instance masks."""
    from detcore.data import ShapesDataset, collate

    pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": with_mask},
        {"type": "Resize", "img_scale": [image_size, image_size], "keep_ratio": True},
        {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
         "to_rgb": True},
        {"type": "Pad", "size_divisor": 32},
        {"type": "PackDetInputs"},
    ]
    count = num_batches * batch_size
    dataset = ShapesDataset(split="train", root=str(root), num_images=count,
                            image_size=(image_size, image_size), pipeline=pipeline, num_val=2)
    return [collate([dataset[i] for i in range(j, j + batch_size)], pad_size_divisor=32)
            for j in range(0, count, batch_size)]


def shapes_config_tables(
    config: str | Path,
    root: str | Path,
    num_train: int,
    num_val: int = 2,
    train_size: int = 128,
    val_size: int = 160,
) -> dict[str, Any]:
    """A shapes config's tables for a small run: ``{"cfg", "train", "val"}`` with ``cfg`` the loaded
    config as a dict and ``train`` / ``val`` its data tables on ``num_train`` / ``num_val`` generated
    128x128 images under ``root``. Every ``Resize`` / ``MultiScaleFlipAug`` with an ``img_scale``
    resizes to ``train_size`` (train) or ``val_size`` (val) squares, and ``RandomFlip`` never flips."""
    import copy

    from detcore.config import load_config

    def pipeline_at(pipeline: list[dict], size: int) -> list[dict]:
        pipeline = copy.deepcopy(pipeline)
        for step in pipeline:
            if step["type"] in ("Resize", "MultiScaleFlipAug") and "img_scale" in step:
                step["img_scale"] = [size, size]
            if step["type"] == "RandomFlip":
                step["flip_ratio"] = 0.0
        return pipeline

    cfg = load_config(config).to_dict()
    common = {"root": str(root), "num_train": num_train, "num_val": num_val, "image_size": [128, 128]}
    train = dict(cfg["data"]["train"], **common)
    train["pipeline"] = pipeline_at(train["pipeline"], train_size)
    val = dict(cfg["data"]["val"], **common)
    val["pipeline"] = pipeline_at(val["pipeline"], val_size)
    return {"cfg": cfg, "train": train, "val": val}


def first_batch(table: Mapping[str, Any], batch_size: int = 2) -> dict[str, Any]:
    """The first collated batch (unshuffled, padded to 32) of the dataset a data table builds, e.g. one
    of :func:`shapes_config_tables`' ``train`` / ``val``."""
    from detcore.data import build_dataloader, build_dataset

    dataset = build_dataset(table)
    loader = build_dataloader(dataset, batch_size=batch_size, num_workers=0, shuffle=False, seed=0,
                              pad_size_divisor=32)  # fmt: skip
    return next(iter(loader))
