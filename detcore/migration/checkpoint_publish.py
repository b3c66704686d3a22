"""Publish a training checkpoint: weights only, on the CPU, named with its hash (as the reference does).

:func:`publish_checkpoint` drops the optimizer, scheduler, RNG, gradient-scaler and EMA state (detcore's
``ema_state_dict`` and the reference's ``ema_*`` buffers in the state dict), moves every tensor to the
CPU, saves ``{"state_dict", "meta"}`` and renames the file to ``<stem>-<first 8 hex digits of its
sha256><suffix>``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch

from detcore.migration.checkpoint_upgrade import plain, read_checkpoint
from detcore.models.checkpoint_io import sha256_of

#: ``meta`` entries kept in a published file (the rest describe the training run)
KEPT_META = ("classes", "CLASSES", "config", "detcore_version", "mmdet_version", "epoch", "iter")


def publish_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write the weights of ``src`` to ``dst`` with the hash suffix; returns the final path."""
    ckpt = read_checkpoint(src)
    state = ckpt.get("state_dict", ckpt)
    weights = OrderedDict(
        (k, v.detach().cpu().clone())
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and not k.startswith(("ema_", "data_preprocessor."))
    )
    if not weights:
        raise ValueError(f"checkpoint '{src}' has no weights to publish")
    meta = {k: v for k, v in plain(ckpt.get("meta") or {}).items() if k in KEPT_META}
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": weights, "meta": meta}, dst)
    final = dst.with_name(f"{dst.stem}-{sha256_of(dst)[:8]}{dst.suffix or '.pth'}")
    os.replace(dst, final)
    return final
