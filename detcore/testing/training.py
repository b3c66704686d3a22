"""A few optimisation steps on a fixed batch: the "it learns" check for heads and detectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def train_steps(
    model: nn.Module,
    batch: Mapping[str, Any],
    iterations: int = 10,
    lr: float = 0.01,
    optimizer: str = "sgd",
) -> list[dict[str, float]]:
    """Train ``model`` (a detector: ``forward(imgs, img_metas, gt_instances, gt_ignored_instances)`` in
    train mode returns its losses) on ``batch`` for ``iterations`` steps, as the engine does (the total
    is the sum of every entry whose name contains ``loss``, see ``detcore.engine.loops.parse_losses``).

    Returns the log of every step, ``{"loss": total, "<name>": value, ...}`` as floats (before the
    step's update). ``optimizer`` is ``"sgd"`` (momentum 0.9) or ``"adam"``. The model is left in
    train mode. A non-finite total stops with an ``AssertionError`` naming the step and the losses.
    """
    from detcore.engine.loops import parse_losses

    if iterations < 1:
        raise ValueError(f"train_steps: iterations must be >= 1, got {iterations}")
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"train_steps: optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    model.train()
    names = ("imgs", "img_metas", "gt_instances", "gt_ignored_instances")
    inputs = {k: batch[k] for k in names if k in batch}
    extra = {k: v for k, v in batch.items() if k not in inputs}
    log = []
    for step in range(iterations):
        losses = model(**inputs, **extra)
        total, log_vars = parse_losses(losses)
        assert torch.isfinite(total), f"step {step}: non-finite loss {log_vars}"
        opt.zero_grad()
        total.backward()
        opt.step()
        log.append(log_vars)
    return log


def check_loss_falls(
    model: nn.Module,
    batch: Mapping[str, Any],
    iterations: int = 20,
    lr: float = 0.01,
    optimizer: str = "sgd",
    keys: tuple[str, ...] = ("loss",),
    ratio: float = 0.9,
) -> list[dict[str, float]]:
    """Assert that training on ``batch`` lowers each of ``keys`` (default the total): the mean of the
    last three steps is below ``ratio`` times the first step's value. Returns the log of
    :func:`train_steps`; the ``AssertionError`` names the key and both values."""
    log = train_steps(model, batch, iterations, lr, optimizer)
    for key in keys:
        if key not in log[0]:
            raise KeyError(f"check_loss_falls: no loss {key!r}; the model returns {sorted(log[0])}")
        first = log[0][key]
        tail = [step[key] for step in log[-3:]]
        last = sum(tail) / len(tail)
        assert last < ratio * first, (
            f"{key} did not fall over {iterations} iterations: {first:.4f} -> {last:.4f} "
            f"(expected below {ratio} x the first)"
        )
    return log
