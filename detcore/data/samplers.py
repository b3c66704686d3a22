"""Samplers: aspect-ratio grouping, distributed variants and infinite streams.

Grouping follows the reference: every dataset has ``flag`` (``uint8 (len,)``, 1 when ``w / h > 1``);
a *group sampler* orders the indices so that each consecutive chunk of ``samples_per_gpu`` indices
comes from one group, hence the images of a batch share an orientation. Each group is padded to a
multiple of ``samples_per_gpu`` by repeating random members of that group.

Every sampler is seeded (``seed``) and reshuffles per epoch with ``set_epoch(epoch)``: the order of
epoch ``e`` is a function of ``(seed, e)`` only.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler as _TorchDistributedSampler


def get_dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of torch.distributed, ``(0, 1)`` when it is not initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _flags(dataset: Sized) -> np.ndarray:
    flag = getattr(dataset, "flag", None)
    if flag is None:
        return np.zeros(len(dataset), dtype=np.uint8)
    flag = np.asarray(flag, dtype=np.int64)
    if len(flag) != len(dataset):
        raise ValueError(f"dataset.flag has {len(flag)} entries but the dataset has {len(dataset)} items")
    return flag


def _grouped_indices(
    flag: np.ndarray, samples_per_gpu: int, rng: np.random.RandomState, shuffle: bool, multiple: int
) -> np.ndarray:
    """Indices ordered so that chunks of ``samples_per_gpu`` share a group; each group padded to a
    multiple of ``multiple`` (``samples_per_gpu * num_replicas``) with random repeats of its members."""
    chunks = []
    for g in np.unique(flag):
        members = np.nonzero(flag == g)[0]
        if shuffle:
            members = members[rng.permutation(len(members))]
        size = int(math.ceil(len(members) / multiple)) * multiple
        extra = size - len(members)
        if extra:
            members = np.concatenate([members, rng.choice(members, extra, replace=extra > len(members))])
        chunks.extend(np.split(members, len(members) // samples_per_gpu))
    if shuffle:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


class GroupSampler(Sampler[int]):
    """Single-process aspect-ratio grouping sampler (see the module docstring)."""

    def __init__(self, dataset: Sized, samples_per_gpu: int = 1, seed: int = 0, shuffle: bool = True) -> None:
        if samples_per_gpu < 1:
            raise ValueError(f"samples_per_gpu must be >= 1, got {samples_per_gpu}")
        self.dataset = dataset
        self.samples_per_gpu = samples_per_gpu
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.flag = _flags(dataset)
        counts = np.bincount(self.flag) if len(self.flag) else np.zeros(0, dtype=np.int64)
        self.num_samples = int(sum(math.ceil(c / samples_per_gpu) * samples_per_gpu for c in counts if c))

    def __iter__(self) -> Iterator[int]:
        rng = np.random.RandomState((self.seed + self.epoch) % 2**32)
        idx = _grouped_indices(self.flag, self.samples_per_gpu, rng, self.shuffle, self.samples_per_gpu)
        assert len(idx) == self.num_samples
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class DistributedGroupSampler(Sampler[int]):
    """Aspect-ratio grouping across ``num_replicas`` processes: each rank gets ``len / num_replicas``
    indices, and every batch of ``samples_per_gpu`` on every rank shares one group."""

    def __init__(
        self,
        dataset: Sized,
        samples_per_gpu: int = 1,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        r, w = get_dist_info()
        self.rank = r if rank is None else int(rank)
        self.num_replicas = w if num_replicas is None else int(num_replicas)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self.dataset = dataset
        self.samples_per_gpu = samples_per_gpu
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        self.flag = _flags(dataset)
        per = samples_per_gpu * self.num_replicas
        counts = np.bincount(self.flag) if len(self.flag) else np.zeros(0, dtype=np.int64)
        self.total_size = int(sum(math.ceil(c / per) * per for c in counts if c))
        self.num_samples = self.total_size // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        rng = np.random.RandomState((self.seed + self.epoch) % 2**32)
        per = self.samples_per_gpu * self.num_replicas
        idx = _grouped_indices(self.flag, self.samples_per_gpu, rng, self.shuffle, per)
        # interleave whole batches: batch j goes to rank j % num_replicas
        batches = idx.reshape(-1, self.samples_per_gpu)
        mine = batches[self.rank :: self.num_replicas].reshape(-1)
        assert len(mine) == self.num_samples
        return iter(mine.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class DistributedSampler(_TorchDistributedSampler):
    """``torch.utils.data.DistributedSampler`` with the rank/world size taken from torch.distributed
    when not given, so that it also works (as one replica) in a single process."""

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        r, w = get_dist_info()
        super().__init__(
            dataset,
            num_replicas=w if num_replicas is None else num_replicas,
            rank=r if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )


class InfiniteSampler(Sampler[int]):
    """An endless stream of indices for iteration-based runs; rank ``r`` of ``w`` takes every
    ``w``-th index of one shared seeded stream (reshuffled after each pass when ``shuffle``)."""

    def __init__(
        self,
        dataset: Sized,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        r, w = get_dist_info()
        self.rank = r if rank is None else int(rank)
        self.num_replicas = w if num_replicas is None else int(num_replicas)
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = int(seed)
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError("InfiniteSampler: the dataset is empty")

    def _stream(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=g).tolist()
            else:
                yield from range(self.size)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(self._stream(), self.rank, None, self.num_replicas)

    def __len__(self) -> int:
        """The length of one pass on this rank (what an epoch would be)."""
        return int(math.ceil(self.size / self.num_replicas))

    def set_epoch(self, epoch: int) -> None:  # the stream does not restart per epoch
        pass


class InfiniteBatchSampler(Sampler[list]):
    """Batches drawn from an :class:`InfiniteSampler` stream."""

    def __init__(
        self,
        dataset: Sized,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.sampler = InfiniteSampler(dataset, shuffle, seed, num_replicas, rank)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list]:
        it = iter(self.sampler)
        while True:
            yield [next(it) for _ in range(self.batch_size)]

    def __len__(self) -> int:
        return int(math.ceil(len(self.sampler) / self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        pass


class InfiniteGroupBatchSampler(InfiniteBatchSampler):
    """Endless batches whose images share the aspect-ratio group (``dataset.flag``): indices from the
    stream are put in per-group buckets and a bucket is emitted as soon as it holds ``batch_size``."""

    def __init__(
        self,
        dataset: Sized,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(dataset, batch_size, shuffle, seed, num_replicas, rank)
        self.flag = _flags(dataset)

    def __iter__(self) -> Iterator[list]:
        buckets: dict[int, list[int]] = {}
        for idx in self.sampler:
            bucket = buckets.setdefault(int(self.flag[idx]), [])
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
