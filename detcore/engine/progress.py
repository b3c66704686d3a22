"""A small terminal progress bar (used only when the output stream is an interactive terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days} day, " if days else "") + f"{h}:{m:02d}:{s:02d}"


class ProgressBar:
    """``[#####.....] done/total, rate, elapsed, ETA`` redrawn in place at most every ``min_interval`` s."""

    def __init__(
        self,
        total: int,
        desc: str = "",
        stream: TextIO | None = None,
        width: int = 30,
        min_interval: float = 0.1,
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.stream = stream or sys.stdout
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n: int = 1, suffix: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval or self.done >= self.total:
            self._last_draw = now
            self.stream.write("\r\033[K" + self.render(now, suffix))
            self.stream.flush()

    def render(self, now: float | None = None, suffix: str = "") -> str:
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        frac = min(self.done / self.total, 1.0) if self.total else 0.0
        filled = int(round(frac * self.width))
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        text = (
            f"{self.desc}[{bar}] {self.done}/{self.total}, {rate:.1f} it/s, "
            f"elapsed {format_seconds(elapsed)}, "
            f"ETA {format_seconds(eta)}"
        )
        return f"{text} {suffix}".rstrip()

    def clear(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
