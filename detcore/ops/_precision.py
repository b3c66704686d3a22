"""Precision policy of the op fronts: which dtype an op computes in, and a region without autocast."""

from __future__ import annotations

import contextlib
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor


def compute_dtype(op: str, named: Sequence[Tuple[str, Optional[Tensor]]]) -> torch.dtype:
    """The dtype a float op computes in for these inputs (None entries are ignored).

    float64 when every input is float64; float32 when each is float32, float16 or bfloat16, so that
    autocast's half feature maps meet float32 rois or weights and still get float32 arithmetic (half
    coordinates lose whole pixels past 2048). Mixing float64 with anything else is refused.
    """
    tensors = [(name, t) for name, t in named if t is not None]
    first_name, first = tensors[0]
    is_double = first.dtype == torch.float64
    for name, t in tensors[1:]:
        if (t.dtype == torch.float64) != is_double:
            raise TypeError(f"{op}: '{name}' has dtype {t.dtype} but '{first_name}' has dtype {first.dtype}")
    return torch.float64 if is_double else torch.float32


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A region where autocast is off, so an op computes in the dtype :func:`compute_dtype` chose
    (otherwise the reference's matmuls would drop back to autocast's half precision)."""
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()  # nothing to turn off: keeps exported graphs free of autocast regions


def cast(t: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """``t`` in ``dtype`` (None stays None; no graph node when it already is)."""
    return t if t is None or t.dtype == dtype else t.to(dtype)
