"""Building datasets from config tables and data loaders around them."""

from __future__ import annotations

import random
from functools import partial
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from detcore.data.collate import collate
from detcore.data.samplers import (
    DistributedGroupSampler,
    DistributedSampler,
    GroupSampler,
    InfiniteBatchSampler,
    InfiniteGroupBatchSampler,
    get_dist_info,
)


def build_dataset(
    cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | Dataset,
    default_args: Mapping[str, Any] | None = None,
    where: str = "data",
) -> Dataset:
    """Build a dataset from a table ``{"type": name, **kwargs}`` through the registry kind "dataset".

    A list of tables builds a :class:`~detcore.data.datasets.wrappers.ConcatDataset`; so does a table
    whose ``ann_file`` is a list (one dataset per file, the other keys shared). ``default_args`` are
    passed unless the table sets them. An already-built dataset is returned as it is. ``where`` is
    the table's key path (``data.train``), for errors.
    """
    from detcore.data.datasets.wrappers import ConcatDataset
    from detcore.registry import build

    if isinstance(cfg, Dataset):
        return cfg
    if isinstance(cfg, (list, tuple)):
        return ConcatDataset([build_dataset(c, default_args, f"{where}.{i}") for i, c in enumerate(cfg)])
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"build_dataset: expected a dataset table or a list of tables, got {type(cfg).__name__}"
        )
    if isinstance(cfg.get("ann_file"), (list, tuple)):
        parts = []
        for i, ann in enumerate(cfg["ann_file"]):
            one = dict(cfg, ann_file=ann)
            for key in ("img_prefix", "seg_prefix", "proposal_file"):
                if isinstance(cfg.get(key), (list, tuple)):
                    one[key] = cfg[key][i]
            parts.append(build_dataset(one, default_args, where))
        return ConcatDataset(parts)
    return build("dataset", cfg, where=where, **dict(default_args or {}))


def worker_init_fn(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    """Seed numpy, random and torch in a loader worker with ``seed + rank * num_workers + worker_id``."""
    worker_seed = (num_workers * rank + worker_id + seed) % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    torch.manual_seed(worker_seed)


def _shared_seed(seed: int | None, distributed: bool) -> int:
    if seed is not None:
        return int(seed)
    value = int(np.random.randint(2**31))
    if distributed:  # every rank must draw the same sampler order
        t = torch.tensor(value, dtype=torch.int64)
        torch.distributed.broadcast(t, src=0)
        value = int(t.item())
    return value


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    drop_last: bool = False,
    group_by_aspect_ratio: bool = True,
    distributed: bool | None = None,
    infinite: bool = False,
    pad_size_divisor: int = 1,
    persistent_workers: bool = False,
) -> DataLoader:
    """A DataLoader yielding batches in the format of :func:`detcore.data.collate.collate`.

    ``batch_size`` and ``num_workers`` are per process. Sampler choice:

    - ``infinite``: :class:`InfiniteGroupBatchSampler` (or :class:`InfiniteBatchSampler` without
      grouping) -- an endless stream for iteration-based runs;
    - ``shuffle`` and ``group_by_aspect_ratio``: :class:`GroupSampler`, or
      :class:`DistributedGroupSampler` when distributed;
    - otherwise torch's distributed / random / sequential samplers.

    ``distributed=None`` means "when torch.distributed is initialised". Workers are seeded with
    ``seed + rank * num_workers + worker_id`` (numpy, random, torch). Call :func:`set_loader_epoch`
    at the start of each epoch so that shuffling differs between epochs.
    """
    if batch_size < 1:
        raise ValueError(f"build_dataloader: batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"build_dataloader: num_workers must be >= 0, got {num_workers}")
    rank, world_size = get_dist_info()
    if distributed is None:
        distributed = world_size > 1
    seed = _shared_seed(seed, bool(distributed) and world_size > 1)
    num_replicas, rank = (world_size, rank) if distributed else (1, 0)
    has_flag = getattr(dataset, "flag", None) is not None
    group = group_by_aspect_ratio and has_flag

    sampler: Sampler | None = None
    batch_sampler: Sampler | None = None
    if infinite:
        cls = InfiniteGroupBatchSampler if group else InfiniteBatchSampler
        batch_sampler = cls(
            dataset, batch_size, shuffle=shuffle, seed=seed, num_replicas=num_replicas, rank=rank
        )
    elif shuffle and group:
        sampler = (
            DistributedGroupSampler(dataset, batch_size, num_replicas, rank, seed=seed)
            if distributed
            else GroupSampler(dataset, batch_size, seed=seed)
        )
    elif distributed:
        sampler = DistributedSampler(dataset, num_replicas, rank, shuffle=shuffle, seed=seed)
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)

    init_fn = (
        partial(worker_init_fn, num_workers=num_workers, rank=rank, seed=seed) if num_workers > 0 else None
    )
    collate_fn = partial(collate, pad_size_divisor=pad_size_divisor)
    common: dict[str, Any] = dict(
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=init_fn,
        persistent_workers=persistent_workers and num_workers > 0,
        pin_memory=False,
    )
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler (and batch sampler) which epoch starts, for per-epoch shuffling."""
    for s in (loader.sampler, loader.batch_sampler):
        if hasattr(s, "set_epoch"):
            s.set_epoch(epoch)
