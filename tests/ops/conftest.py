"""Shared fixtures for the ops tests: run a test under each available backend."""

from __future__ import annotations

import pytest
import torch

from detcore.ops import native_available

NATIVE = native_available()


@pytest.fixture(params=["reference", "native"])
def backend(request, monkeypatch):
    """Force DETCORE_OPS to each backend in turn; native is skipped when not installed."""
    if request.param == "native" and not NATIVE:
        pytest.skip("detcore_native is not installed (pip install --no-build-isolation ./native)")
    monkeypatch.setenv("DETCORE_OPS", request.param)
    torch.manual_seed(0)
    return request.param


@pytest.fixture
def force(monkeypatch):
    """Call ``force("native")`` / ``force("reference")`` inside a test to switch backend."""

    def _set(name: str) -> None:
        monkeypatch.setenv("DETCORE_OPS", name)

    return _set
