"""Backend selection for :mod:`detcore.ops`.

``DETCORE_OPS`` chooses the implementation: ``native`` (the compiled ``detcore_native`` package, an error
when it is not installed), ``reference`` (pure PyTorch) or ``auto`` (the default: native when importable).
The variable is read at every call, so tests may switch it with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType
from typing import Optional

import torch

ENV_VAR = "DETCORE_OPS"
_CHOICES = ("auto", "native", "reference")


@functools.cache
def _import_native() -> Optional[ModuleType]:
    try:
        return importlib.import_module("detcore_native")
    except ImportError:
        return None


@functools.cache
def _resolve(choice: str) -> str:
    choice = choice.strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"{ENV_VAR}={choice!r} is not one of {', '.join(_CHOICES)}")
    if choice == "reference":
        return "reference"
    available = _import_native() is not None
    if choice == "native" and not available:
        raise RuntimeError(
            f"{ENV_VAR}=native but the 'detcore_native' package cannot be imported; "
            "build it with `pip install --no-build-isolation ./native` or set DETCORE_OPS=reference"
        )
    return "native" if available else "reference"


@torch._dynamo.assume_constant_result
def backend() -> str:
    """Return ``"native"`` or ``"reference"``: the implementation the ops in :mod:`detcore.ops` use now."""
    return _resolve(os.environ.get(ENV_VAR, "auto"))


def native_available() -> bool:
    """True when the compiled ``detcore_native`` package imports."""
    return _import_native() is not None


def use_native() -> bool:
    """True when the native kernels should run (used internally by the op fronts)."""
    return backend() == "native"
