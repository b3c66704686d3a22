"""torch's intra-op thread count for a block of code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``, then restore the previous count."""
    import torch

    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"torch thread count must be an int >= 1, got {count!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
