"""Built-in plugin: the kernel's datasets and data-pipeline transforms."""

from __future__ import annotations

from typing import Any, Callable

from detcore.hookspecs import hookimpl


@hookimpl
def detcore_register_datasets() -> dict[str, Callable[..., Any]]:
    from detcore.data.datasets import DATASETS

    return dict(DATASETS)


@hookimpl
def detcore_register_transforms() -> dict[str, Callable[..., Any]]:
    from detcore.data.transforms import TRANSFORMS

    return dict(TRANSFORMS)
