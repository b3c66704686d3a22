"""Datasets, transforms, batching and the embedded shapes dataset.

Names are imported lazily (PEP 562) so that light modules such as :mod:`detcore.data.image_io` can be
imported by :mod:`detcore.structures` without pulling in the datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

# bound eagerly so that ``detcore.data.collate`` is the function, not the submodule of that name
from detcore.data.collate import collate as collate

_EXPORTS = {
    "build_dataset": "detcore.data.builder",
    "build_dataloader": "detcore.data.builder",
    "worker_init_fn": "detcore.data.builder",
    "GroupSampler": "detcore.data.samplers",
    "DistributedGroupSampler": "detcore.data.samplers",
    "DistributedSampler": "detcore.data.samplers",
    "InfiniteSampler": "detcore.data.samplers",
    "InfiniteGroupBatchSampler": "detcore.data.samplers",
    "InfiniteBatchSampler": "detcore.data.samplers",
    "Compose": "detcore.data.transforms.compose",
    "CustomDataset": "detcore.data.datasets.custom",
    "CocoDataset": "detcore.data.datasets.coco",
    "VOCDataset": "detcore.data.datasets.voc",
    "XMLDataset": "detcore.data.datasets.voc",
    "ShapesDataset": "detcore.data.datasets.shapes",
    "ConcatDataset": "detcore.data.datasets.wrappers",
    "RepeatDataset": "detcore.data.datasets.wrappers",
    "ClassBalancedDataset": "detcore.data.datasets.wrappers",
    "BadDataReporter": "detcore.data.bad_data",
    "BadDataError": "detcore.data.bad_data",
    "generate_shapes": "detcore.data.shapes",
    "default_shapes_root": "detcore.data.shapes",
}

__all__ = sorted([*_EXPORTS, "collate"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'detcore.data' has no attribute '{name}'")
