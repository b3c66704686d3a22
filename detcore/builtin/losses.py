"""Built-in plugin: the standard classification and regression losses."""

from __future__ import annotations

from collections.abc import Mapping

from detcore.hookspecs import Factory, hookimpl
from detcore.models import losses as L


@hookimpl
def detcore_register_losses() -> Mapping[str, Factory]:
    return {
        "CrossEntropyLoss": L.CrossEntropyLoss,
        "FocalLoss": L.FocalLoss,
        "SmoothL1Loss": L.SmoothL1Loss,
        "L1Loss": L.L1Loss,
        "MSELoss": L.MSELoss,
        "BalancedL1Loss": L.BalancedL1Loss,
        "IoULoss": L.IoULoss,
        "GIoULoss": L.GIoULoss,
        "DIoULoss": L.DIoULoss,
        "CIoULoss": L.CIoULoss,
        "BoundedIoULoss": L.BoundedIoULoss,
        "GHMC": L.GHMC,
        "GaussianFocalLoss": L.GaussianFocalLoss,
        "GHMR": L.GHMR,
    }
