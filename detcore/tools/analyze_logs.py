"""Loss and metric curves from the engine's JSON-lines logs (``<work_dir>/<timestamp>.log.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from detcore.errors import DetcoreError


def load_json_log(path: str | Path) -> list[dict]:
    """The records of one JSON-lines log; a malformed line is an error naming the file and line."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DetcoreError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
    return records


def series(records: Sequence[dict], mode: str, key: str) -> tuple[list[int], list[float]]:
    """``(iterations, values)`` of ``key`` over the records of ``mode`` (``train``/``val``/``test``)."""
    xs, ys = [], []
    for record in records:
        if record.get("mode") == mode and isinstance(record.get(key), (int, float)):
            xs.append(int(record.get("iter", len(xs))))
            ys.append(float(record[key]))
    return xs, ys


def plot_curves(
    logs: Sequence[str | Path],
    out_file: str | Path,
    train_keys: Sequence[str] = ("loss",),
    val_keys: Sequence[str] = ("bbox_mAP",),
    title: str | None = None,
) -> Path:
    """Plot training scalars (left) and validation metrics (right) by iteration into ``out_file``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DetcoreError("plotting needs matplotlib: pip install matplotlib") from None
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    plotted = 0
    for log in logs:
        records = load_json_log(log)
        tag = Path(log).name if len(logs) > 1 else ""
        for key in train_keys:
            xs, ys = series(records, "train", key)
            if xs:
                ax_train.plot(xs, ys, label=f"{tag} {key}".strip())
                plotted += 1
        for key in val_keys:
            xs, ys = series(records, "val", key)
            if xs:
                ax_val.plot(xs, ys, marker="o", label=f"{tag} {key}".strip())
                plotted += 1
    if not plotted:
        raise DetcoreError(
            f"none of {list(train_keys) + list(val_keys)} is logged in {', '.join(map(str, logs))}"
        )
    ax_train.set(xlabel="iteration", ylabel="training loss", title="training")
    ax_val.set(xlabel="iteration", ylabel="metric", title="validation")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


@dataclass(frozen=True)
class TrainTimeStats:
    """Per-epoch mean iteration times of one training log (seconds per iteration)."""

    epoch_means: dict[int, float]
    mean_iter_time: float

    @property
    def slowest_epoch(self) -> int:
        return max(self.epoch_means, key=self.epoch_means.__getitem__)

    @property
    def fastest_epoch(self) -> int:
        return min(self.epoch_means, key=self.epoch_means.__getitem__)

    @property
    def std_over_epochs(self) -> float:
        """Population standard deviation of the per-epoch means (0 for a single epoch)."""
        return float(np.std(list(self.epoch_means.values())))


def train_time_stats(records: Sequence[dict], include_outliers: bool = False) -> TrainTimeStats:
    """Training speed from the logged ``time`` of each training record, grouped by ``epoch``.

    The first logged record of every epoch is left out unless ``include_outliers``: it carries the
    data loader's start-up and is much slower than the rest. Iteration-based runs log no ``epoch`` and
    count as one epoch. ``mean_iter_time`` is the mean over all kept records.
    """
    by_epoch: dict[int, list[float]] = {}
    for record in records:
        if record.get("mode") == "train" and isinstance(record.get("time"), (int, float)):
            by_epoch.setdefault(int(record.get("epoch", 1)), []).append(float(record["time"]))
    if not include_outliers:
        by_epoch = {epoch: times[1:] for epoch, times in by_epoch.items() if len(times) > 1}
    if not by_epoch:
        raise DetcoreError(
            "no training record with a 'time' value"
            + ("" if include_outliers else " beyond each epoch's first (try --include-outliers)")
        )
    all_times = [t for times in by_epoch.values() for t in times]
    return TrainTimeStats(
        epoch_means={epoch: float(np.mean(times)) for epoch, times in sorted(by_epoch.items())},
        mean_iter_time=float(np.mean(all_times)),
    )


def format_train_time(log: str | Path, stats: TrainTimeStats) -> str:
    """The report ``detcore analyze-logs cal_train_time`` prints for one log."""
    means = stats.epoch_means
    return "\n".join(
        [
            f"----- train time of {log} -----",
            f"slowest epoch {stats.slowest_epoch}, average time is {means[stats.slowest_epoch]:.4f}",
            f"fastest epoch {stats.fastest_epoch}, average time is {means[stats.fastest_epoch]:.4f}",
            f"time std over epochs is {stats.std_over_epochs:.4f}",
            f"average iter time: {stats.mean_iter_time:.4f} s/iter",
        ]
    )
