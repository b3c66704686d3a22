"""torch.distributed helpers: set-up from torchrun's environment, rank queries, gathering objects."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> bool:
    """Initialise the default process group from torchrun's variables (``RANK``, ``WORLD_SIZE``, ...).

    Returns ``True`` when the process is part of a group of more than one process. The backend is
    NCCL when CUDA is available, gloo otherwise, unless ``backend`` says. Each process uses CUDA
    device ``LOCAL_RANK``.
    """
    if is_distributed():
        return get_world_size() > 1
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def collect_results(results: list[Any], dataset_size: int | None) -> list[Any]:
    """Merge per-rank result lists of an evaluation in dataset order.

    Distributed samplers without shuffling give rank ``r`` the items ``r, r + W, r + 2W, ...`` (padded
    at the end), so the merged order interleaves the ranks; the padding is cut to ``dataset_size``.
    """
    parts = all_gather_object(list(results))
    if len(parts) == 1:
        return parts[0]
    merged: list[Any] = []
    for i in range(max(len(p) for p in parts)):
        for part in parts:
            if i < len(part):
                merged.append(part[i])
    return merged[:dataset_size] if dataset_size is not None else merged
