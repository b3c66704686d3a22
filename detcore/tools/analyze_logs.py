"""Loss and metric curves from the engine's JSON-lines logs (``<work_dir>/<timestamp>.log.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

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
