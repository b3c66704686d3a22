"""Running averages of logged scalars between two log lines."""

from __future__ import annotations

from typing import Mapping


class LogBuffer:
    """Accumulates floats per key; :meth:`average` gives the mean of each key since the last :meth:`clear`."""

    def __init__(self) -> None:
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def update(self, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self._sum[key] = self._sum.get(key, 0.0) + float(value)
            self._count[key] = self._count.get(key, 0) + 1

    def average(self) -> dict[str, float]:
        return {k: self._sum[k] / self._count[k] for k in self._sum}

    def clear(self) -> None:
        self._sum.clear()
        self._count.clear()
