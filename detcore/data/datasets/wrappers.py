"""Dataset wrappers: concatenation, repetition and class-balanced over-sampling (LVIS-style)."""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
from torch.utils.data import ConcatDataset as _TorchConcatDataset
from torch.utils.data import Dataset


def _build(cfg: Any) -> Dataset:
    from detcore.data.builder import build_dataset

    return build_dataset(cfg)


def _merge_summaries(datasets: Sequence[Any]) -> dict[str, int]:
    total: Counter = Counter()
    for d in datasets:
        if hasattr(d, "bad_data_summary"):
            total.update(d.bad_data_summary())
    return dict(sorted(total.items()))


class ConcatDataset(_TorchConcatDataset):
    """Concatenate datasets (tables or built datasets). ``CLASSES`` are the first dataset's; ``flag``
    is concatenated. ``separate_eval`` is recorded for the evaluator."""

    def __init__(self, datasets: Sequence[Mapping[str, Any] | Dataset], separate_eval: bool = True) -> None:
        built = [_build(d) for d in datasets]
        if not built:
            raise ValueError("ConcatDataset needs at least one dataset")
        super().__init__(built)
        self.CLASSES = getattr(built[0], "CLASSES", None)
        self.separate_eval = separate_eval
        if all(getattr(d, "flag", None) is not None for d in built):
            self.flag = np.concatenate([np.asarray(d.flag) for d in built])

    def _locate(self, idx: int) -> tuple[Dataset, int]:
        if idx < 0:
            idx += len(self)
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        return self.datasets[d], idx - (self.cumulative_sizes[d - 1] if d else 0)

    def get_cat_ids(self, idx: int) -> list[int]:
        ds, i = self._locate(idx)
        return ds.get_cat_ids(i)

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        ds, i = self._locate(idx)
        return ds.get_ann_info(i)

    def bad_data_summary(self) -> dict[str, int]:
        return _merge_summaries(self.datasets)

    def log_bad_data_summary(self, logger: logging.Logger | None = None) -> dict[str, int]:
        for d in self.datasets:
            if hasattr(d, "log_bad_data_summary"):
                d.log_bad_data_summary(logger)
        return self.bad_data_summary()


class RepeatDataset(Dataset):
    """The dataset repeated ``times`` times (an epoch is ``times`` passes; saves loader restarts)."""

    def __init__(self, dataset: Mapping[str, Any] | Dataset, times: int) -> None:
        if int(times) < 1:
            raise ValueError(f"RepeatDataset: times must be >= 1, got {times}")
        self.dataset = _build(dataset)
        self.times = int(times)
        self.CLASSES = getattr(self.dataset, "CLASSES", None)
        self._ori_len = len(self.dataset)
        if getattr(self.dataset, "flag", None) is not None:
            self.flag = np.tile(np.asarray(self.dataset.flag), self.times)

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[idx % self._ori_len]

    def __len__(self) -> int:
        return self.times * self._ori_len

    def get_cat_ids(self, idx: int) -> list[int]:
        return self.dataset.get_cat_ids(idx % self._ori_len)

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        return self.dataset.get_ann_info(idx % self._ori_len)

    def bad_data_summary(self) -> dict[str, int]:
        return _merge_summaries([self.dataset])

    def log_bad_data_summary(self, logger: logging.Logger | None = None) -> dict[str, int]:
        return (
            self.dataset.log_bad_data_summary(logger) if hasattr(self.dataset, "log_bad_data_summary") else {}
        )


class ClassBalancedDataset(Dataset):
    """Repeat-factor sampling (LVIS): with ``f(c)`` the fraction of images containing category ``c``,
    ``r(c) = max(1, sqrt(oversample_thr / f(c)))``, an image's factor is the max over its categories,
    and image ``i`` appears ``ceil(r(i))`` times. Images without labels count as one extra category
    when ``filter_empty_gt`` is false (factor 1 otherwise)."""

    def __init__(
        self, dataset: Mapping[str, Any] | Dataset, oversample_thr: float, filter_empty_gt: bool = True
    ) -> None:
        self.dataset = _build(dataset)
        self.oversample_thr = float(oversample_thr)
        self.filter_empty_gt = filter_empty_gt
        self.CLASSES = getattr(self.dataset, "CLASSES", None)
        factors = self._get_repeat_factors()
        self.repeat_factors = factors
        self.repeat_indices = [i for i, f in enumerate(factors) for _ in range(int(math.ceil(f)))]
        if getattr(self.dataset, "flag", None) is not None:
            base = np.asarray(self.dataset.flag)
            self.flag = base[np.asarray(self.repeat_indices, dtype=np.int64)].astype(np.uint8)

    def _get_repeat_factors(self) -> list[float]:
        n = len(self.dataset)
        num_classes = len(self.CLASSES or ())
        cats_per_img = []
        freq: dict[int, int] = defaultdict(int)
        for i in range(n):
            cats = set(self.dataset.get_cat_ids(i))
            if not cats and not self.filter_empty_gt:
                cats = {num_classes}
            cats_per_img.append(cats)
            for c in cats:
                freq[c] += 1
        cat_repeat = {c: max(1.0, math.sqrt(self.oversample_thr / (k / n))) for c, k in freq.items()}
        return [max((cat_repeat[c] for c in cats), default=1.0) for cats in cats_per_img]

    def __getitem__(self, idx: int) -> Any:
        return self.dataset[self.repeat_indices[idx]]

    def __len__(self) -> int:
        return len(self.repeat_indices)

    def get_cat_ids(self, idx: int) -> list[int]:
        return self.dataset.get_cat_ids(self.repeat_indices[idx])

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        return self.dataset.get_ann_info(self.repeat_indices[idx])

    def bad_data_summary(self) -> dict[str, int]:
        return _merge_summaries([self.dataset])

    def log_bad_data_summary(self, logger: logging.Logger | None = None) -> dict[str, int]:
        return (
            self.dataset.log_bad_data_summary(logger) if hasattr(self.dataset, "log_bad_data_summary") else {}
        )
