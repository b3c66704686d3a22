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
``empty_image``            image file of 0 bytes: the image is dropped from the index
``bad_image_size``         image entry with a width or height that is not a positive number: dropped
``orphan_annotation``      annotation whose image id is not an image of the file: skipped
``duplicate_image_id``     two image entries with one id: both kept, the later one under a new id
                           (``detail`` names it; the id's annotations stay with the first); refused
                           under ``strict``
=========================  ==========================================================================

Every item is logged once (a warning naming the dataset, image id, file and reason), and
:func:`report_bad_data` writes the full list of a split to ``<work_dir>/bad_data_<split>.json`` and logs
the counts: the training loop at the end of every epoch, the evaluation loops after every pass.

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
from pathlib import Path
from typing import Any, Iterable

from detcore.errors import DetcoreError

logger = logging.getLogger("detcore.data")

#: reasons that are recorded but never raised under ``strict``
NON_FATAL = frozenset({"box_clipped", "no_annotations"})
#: reasons whose item is repaired and kept (the others are skipped)
REPAIRED = frozenset({"box_clipped", "duplicate_image_id"})


class BadDataError(DetcoreError, ValueError):
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
        self._logged: set[tuple[str, str, str, str]] = set()

    # -- recording ---------------------------------------------------------------------------------

    def record(self, reason: str, img_id: Any, filename: str, detail: str = "") -> None:
        rec = BadDataRecord(reason, img_id, str(filename), detail)
        if self.strict and reason not in NON_FATAL:
            raise BadDataError(f"{self.name}: {rec} (strict = true; set strict = false to skip and count)")
        self.records.append(rec)
        self._log_once(rec)

    def record_runtime(self, reason: str, img_id: Any, filename: str, detail: str = "") -> None:
        rec = BadDataRecord(reason, img_id, str(filename), detail)
        if self.strict and reason not in NON_FATAL:
            raise BadDataError(f"{self.name}: {rec} (strict = true; set strict = false to skip and count)")
        path = os.path.join(self._spool(), f"{os.getpid()}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(asdict(rec), default=str) + "\n")
        if os.getpid() == self._owner_pid:  # found by a loader worker: logged by the main process's report
            self._log_once(rec)

    def _log_once(self, rec: BadDataRecord, log: logging.Logger | None = None) -> None:
        key = (rec.reason, str(rec.img_id), rec.filename, rec.detail)
        if key in self._logged:
            return
        self._logged.add(key)
        verb = "fixed" if rec.reason in REPAIRED else "skipped"
        (log or logger).warning(f"{self.name}: {verb}: {rec}")

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
        """Indexing-time and runtime records, each item once (an image read again in a later epoch is
        not counted twice)."""
        seen: set[tuple[str, str, str, str]] = set()
        out = []
        for rec in self.records + self.runtime_records():
            key = (rec.reason, str(rec.img_id), rec.filename, rec.detail)
            if key not in seen:
                seen.add(key)
                out.append(rec)
        return out

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


# -- the report of a split: every item once in the log, counts, and the full list as JSON ----------------


def reporters_of(dataset: Any) -> list[BadDataReporter]:
    """The reporters of ``dataset`` and of the datasets it wraps (concatenations, repeats)."""
    found: list[BadDataReporter] = []
    stack = [dataset]
    while stack:
        d = stack.pop()
        reporter = getattr(d, "bad_data", None)
        if isinstance(reporter, BadDataReporter) and reporter not in found:
            found.append(reporter)
        stack.extend(reversed(list(getattr(d, "datasets", []) or [])))
        if getattr(d, "dataset", None) is not None:
            stack.append(d.dataset)
    return found


def report_bad_data(
    source: Any, split: str, work_dir: str | Path | None, log: logging.Logger | None = None
) -> dict[str, int]:
    """Log every bad item of ``source`` (a dataset, or reporters) not logged yet, write the full list to
    ``<work_dir>/bad_data_<split>.json`` and log one summary line with the counts and that path.

    Returns ``{reason: count}`` (empty when nothing was bad; then no file is written).
    """
    log = log or logger
    reporters = source if isinstance(source, (list, tuple)) else reporters_of(source)
    items = []
    for reporter in reporters:
        for rec in reporter.all_records():
            reporter._log_once(rec, log)
            items.append({"dataset": reporter.name, **asdict(rec)})
    counts = dict(sorted(Counter(item["reason"] for item in items).items()))
    if not counts:
        return counts
    parts = ", ".join(f"{k}={v}" for k, v in counts.items())
    where = ""
    if work_dir is not None:
        path = Path(work_dir) / f"bad_data_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"split": split, "counts": counts, "items": items}, indent=1, default=str))
        where = f"; every item in {path}"
    log.warning(f"data.{split}: bad data skipped or fixed: {parts} (total {len(items)}){where}")
    return counts


def summarise(reporters: Iterable[BadDataReporter]) -> dict[str, int]:
    """``{reason: count}`` over several reporters."""
    total: Counter[str] = Counter()
    for reporter in reporters:
        total.update(reporter.summary())
    return dict(sorted(total.items()))
