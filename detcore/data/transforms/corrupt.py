"""``Corrupt``: one corruption of the robustness benchmark applied to ``results["img"]``."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from detcore.data.corruptions import CORRUPTIONS, corrupt


class Corrupt:
    """Corrupt the loaded image with ``corruption`` at ``severity`` (0 leaves it as is), as the first
    step after ``LoadImageFromFile``. With a ``seed`` each image gets its own reproducible noise (the
    seed plus a checksum of its file name); without, fresh noise every time."""

    def __init__(self, corruption: str, severity: int = 1, seed: int | None = None) -> None:
        if corruption not in CORRUPTIONS:
            raise ValueError(f"Corrupt: unknown corruption {corruption!r}; known: {', '.join(CORRUPTIONS)}")
        if not isinstance(severity, int) or not 0 <= severity <= 5:
            raise ValueError(f"Corrupt: severity must be an int 0..5, got {severity!r}")
        self.corruption, self.severity, self.seed = corruption, severity, seed

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        img = results["img"]
        seed = None
        if self.seed is not None:
            seed = self.seed + zlib.crc32(str(results.get("filename", "")).encode())
        as_float = img.dtype != np.uint8
        image = np.clip(img, 0, 255).astype(np.uint8) if as_float else img
        out = corrupt(image, self.corruption, self.severity, seed)
        results["img"] = out.astype(img.dtype) if as_float else out
        return results

    def __repr__(self) -> str:
        return f"Corrupt(corruption={self.corruption!r}, severity={self.severity})"
