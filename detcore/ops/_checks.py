"""Input validation shared by the op fronts: one clear message per kind of mistake."""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor


def check_tensor(op: str, name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: '{name}' must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_float(op: str, name: str, t: Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{op}: '{name}' must be a floating-point tensor, got dtype {t.dtype}")


def check_dim(op: str, name: str, t: Tensor, dim: int, layout: str) -> None:
    if t.dim() != dim:
        raise ValueError(f"{op}: '{name}' must have shape {layout}, got {tuple(t.shape)}")


def check_last(op: str, name: str, t: Tensor, size: int, layout: str) -> None:
    if t.shape[-1] != size:
        raise ValueError(f"{op}: '{name}' must have shape {layout}, got {tuple(t.shape)}")


def check_same(op: str, ref_name: str, ref: Tensor, name: str, t: Tensor, dtype: bool = True) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: '{name}' is on {t.device} but '{ref_name}' is on {ref.device}")
    if dtype and t.dtype != ref.dtype:
        raise TypeError(f"{op}: '{name}' has dtype {t.dtype} but '{ref_name}' has dtype {ref.dtype}")


def pair(op: str, name: str, v: Union[int, Sequence[int]], minimum: int = 1) -> Tuple[int, int]:
    """Turn an int or a pair into a (h, w) tuple of ints >= minimum."""
    if isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool):
        out = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        out = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{op}: '{name}' must be an int or a pair of ints, got {v!r}")
    if out[0] < minimum or out[1] < minimum:
        raise ValueError(f"{op}: '{name}' must be >= {minimum}, got {v!r}")
    return out
