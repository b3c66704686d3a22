"""Bad-data policy: report every problem, skip it and count it (default) or fail fast (``strict``).

The cases, and what happens to each when ``strict = false``:

=========================  ==========================================================================
reason                     handling
=========================  ==========================================================================
``missing_image``          image file absent at load time: the image is dropped from the index
``corrupt_image``          the file cannot be decoded when read: training draws another image; in test
                           mode the sample is ``None`` and ``collate`` drops it (no prediction for it)
``bad_box_size``           box with width or height <= 0 (or < 1 px, as the reference): annotation skipped
``nan_box``                box with a NaN/inf coordinate: annotation skipped
``box_outside_image``      box entirely outside the image: annotation skipped
``box_clipped``            box partly outside the image: clipped to the image and kept
``unknown_category``       category id not in the annotation file's categories: annotation skipped
``no_annotations``         image without (valid) annotations: dropped from training when
                           ``filter_empty_gt`` (kept in test mode, where it is not a problem)
``bad_annotation``         anything else malformed (e.g. a bbox that is not 4 numbers): skipped
=========================  ==========================================================================

With ``strict = true`` the first problem raises :class:`BadDataError` naming the image id, the file
and the reason (``box_clipped`` and ``no_annotations`` are not errors).

Problems found while reading (corrupt images) happen in DataLoader worker processes; the reporter
spools those records to small files in a per-dataset temporary directory so that the main process
can count them. ``dataset.bad_data_summary()`` returns the counts, ``dataset.log_bad_data_summary()``
logs one line and starts a new epoch's runtime count.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger("detcore.data")

#: reasons that are recorded but never raised under ``strict``
NON_FATAL = frozenset({"box_clipped", "no_annotations"})


class BadDataError(ValueError):
    """A dataset problem under ``strict = true``; the message names image id, file and reason."""


@dataclass
class BadDataRecord:
    reason: str
    img_id: Any
    filename: str
    detail: str = ""

    def __str__(self) -> str:
        return f"image {self.img_id} ({self.filename}): {self.reason}" + (
            f" - {self.detail}" if self.detail else ""
        )


class BadDataReporter:
    """Collects :class:`BadDataRecord` s of one dataset.

    ``record()`` stores a record found while indexing (main process); ``record_runtime()`` one found
    while reading samples (any process; spooled to disk). Under ``strict`` both raise.
    """

    def __init__(self, name: str = "dataset", strict: bool = False) -> None:
        self.name = name
        self.strict = strict
        self.records: list[BadDataRecord] = []
        self._spool_dir: str | None = None
        self._owner_pid = os.getpid()

    # -- recording ---------------------------------------------------------------------------------

    def record(self, reason: str, img_id: Any, filename: str, detail: str = "") -> None:
        rec = BadDataRecord(reason, img_id, str(filename), detail)
        if self.strict and reason not in NON_FATAL:
            raise BadDataError(f"{self.name}: {rec} (strict = true; set strict = false to skip and count)")
        self.records.append(rec)

    def record_runtime(self, reason: str, img_id: Any, filename: str, detail: str = "") -> None:
        rec = BadDataRecord(reason, img_id, str(filename), detail)
        if self.strict and reason not in NON_FATAL:
            raise BadDataError(f"{self.name}: {rec} (strict = true; set strict = false to skip and count)")
        path = os.path.join(self._spool(), f"{os.getpid()}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(asdict(rec), default=str) + "\n")

    def _spool(self) -> str:
        if self._spool_dir is None:
            self._spool_dir = tempfile.mkdtemp(prefix="detcore-bad-data-")
            if os.getpid() == self._owner_pid:
                atexit.register(shutil.rmtree, self._spool_dir, True)
        return self._spool_dir

    def prepare_spool(self) -> None:
        """Create the spool directory now (call in the main process before workers fork/spawn)."""
        self._spool()

    def runtime_records(self) -> list[BadDataRecord]:
        out: list[BadDataRecord] = []
        if self._spool_dir is None or not os.path.isdir(self._spool_dir):
            return out
        for name in sorted(os.listdir(self._spool_dir)):
            with open(os.path.join(self._spool_dir, name)) as f:
                for line in f:
                    if line.strip():
                        out.append(BadDataRecord(**json.loads(line)))
        return out

    def reset_runtime(self) -> None:
        """Forget the runtime records (a new epoch starts)."""
        if self._spool_dir is not None and os.path.isdir(self._spool_dir):
            for name in os.listdir(self._spool_dir):
                os.remove(os.path.join(self._spool_dir, name))

    # -- summary -----------------------------------------------------------------------------------

    def all_records(self) -> list[BadDataRecord]:
        return self.records + self.runtime_records()

    def summary(self) -> dict[str, int]:
        """``{reason: count}`` over indexing-time and runtime records."""
        return dict(sorted(Counter(r.reason for r in self.all_records()).items()))

    def summary_line(self) -> str:
        counts = self.summary()
        if not counts:
            return f"{self.name}: no bad data"
        parts = ", ".join(f"{k}={v}" for k, v in counts.items())
        return f"{self.name}: bad data skipped or fixed: {parts} (total {sum(counts.values())})"

    def log_summary(self, log: logging.Logger | None = None, reset: bool = True) -> dict[str, int]:
        counts = self.summary()
        (log or logger).info(self.summary_line())
        if reset:
            self.reset_runtime()
        return counts
