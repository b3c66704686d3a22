"""Built-in plugin: the kernel's evaluation metrics (COCO, VOC)."""

from __future__ import annotations

from typing import Any, Callable

from detcore.hookspecs import hookimpl


@hookimpl
def detcore_register_metrics() -> dict[str, Callable[..., Any]]:
    from detcore.evaluation import METRICS

    return dict(METRICS)
