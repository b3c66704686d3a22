"""Confusion matrix of detections against ground truth (``detcore confusion-matrix``).

The matrix is ``(C + 1, C + 1)``: row = ground-truth class, column = predicted class, the last row and
column being background. Per image, after dropping detections under ``score_thr`` (and, with
``nms_iou_thr``, class-wise NMS):

- every detection overlapping a ground-truth box with IoU >= ``tp_iou_thr`` adds one to
  ``[gt class, detected class]`` for each such box (the diagonal is the true positives, the rest
  confusions between classes);
- a detection overlapping no ground-truth box adds one to ``[background, detected class]``;
- a ground-truth box that no detection of its own class overlaps adds one to ``[gt class, background]``.

This is the reference's counting rule; the picture shows each row normalised to percent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detcore.evaluation.mean_ap import bbox_overlaps
from detcore.tools.results import ImageResult, ImageTruth


def _class_nms(result: ImageResult, keep: np.ndarray, iou_thr: float) -> np.ndarray:
    import torch

    from detcore.ops import batched_nms

    idx = np.flatnonzero(keep)
    if not len(idx):
        return keep
    kept = batched_nms(
        torch.from_numpy(result.bboxes[idx]),
        torch.from_numpy(result.scores[idx]),
        torch.from_numpy(result.labels[idx]),
        iou_thr,
    )
    out = np.zeros_like(keep)
    out[idx[kept.numpy()]] = True
    return out


def image_confusion(
    result: ImageResult,
    truth: ImageTruth,
    num_classes: int,
    score_thr: float = 0.3,
    tp_iou_thr: float = 0.5,
    nms_iou_thr: float | None = None,
) -> np.ndarray:
    """One image's ``(C + 1, C + 1)`` counts (see the module docstring)."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    keep = result.scores >= score_thr
    if nms_iou_thr is not None:
        keep = _class_nms(result, keep, nms_iou_thr)
    boxes, labels = result.bboxes[keep], result.labels[keep]
    ious = bbox_overlaps(boxes, truth.bboxes)  # (detections, gts)
    found = np.zeros(len(truth.labels), dtype=bool)
    for det_label, det_ious in zip(labels, ious):
        hits = np.flatnonzero(det_ious >= tp_iou_thr)
        if not len(hits):
            matrix[num_classes, det_label] += 1
            continue
        for gt in hits:
            matrix[truth.labels[gt], det_label] += 1
            found[gt] |= truth.labels[gt] == det_label
    for gt_label in truth.labels[~found]:
        matrix[gt_label, num_classes] += 1
    return matrix


def confusion_matrix(
    pairs: Sequence[tuple[ImageResult, ImageTruth]],
    num_classes: int,
    score_thr: float = 0.3,
    tp_iou_thr: float = 0.5,
    nms_iou_thr: float | None = None,
) -> np.ndarray:
    """The summed counts of every (result, truth) pair."""
    total = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for result, truth in pairs:
        total += image_confusion(result, truth, num_classes, score_thr, tp_iou_thr, nms_iou_thr)
    return total


def row_percent(matrix: np.ndarray) -> np.ndarray:
    """Each row as percent of its sum (rows with no count stay 0)."""
    sums = matrix.sum(1, keepdims=True)
    return np.where(sums > 0, 100.0 * matrix / np.maximum(sums, 1), 0.0)


def save_confusion_matrix(
    matrix: np.ndarray,
    classes: Sequence[str],
    out_dir: str | Path,
    settings: dict | None = None,
    title: str = "Normalized confusion matrix (%)",
) -> tuple[Path, Path | None]:
    """Write ``confusion_matrix.json`` (counts, row percent, labels, settings) and, where matplotlib
    is installed, ``confusion_matrix.png``; returns both paths (the picture's ``None`` without it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [*classes, "background"]
    json_path = out_dir / "confusion_matrix.json"
    json_path.write_text(
        json.dumps(
            {
                "labels": names,
                "counts": matrix.tolist(),
                "row_percent": np.round(row_percent(matrix), 2).tolist(),
                "settings": settings or {},
            },
            indent=1,
        )
    )
    try:
        fig = confusion_matrix_figure(matrix, classes, title)
    except ImportError:
        return json_path, None
    png_path = out_dir / "confusion_matrix.png"
    fig.savefig(png_path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return json_path, png_path


def confusion_matrix_figure(
    matrix: np.ndarray, classes: Sequence[str], title: str = "Normalized confusion matrix (%)"
) -> Any:
    """A matplotlib figure of the row-normalised matrix (raises ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*classes, "background"]
    percent = row_percent(matrix)
    size = max(4.0, 0.6 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="ground truth", title=title)
    if len(names) <= 30:
        for i in range(len(names)):
            for j in range(len(names)):
                color = "white" if percent[i, j] > 50 else "black"
                ax.text(j, i, f"{percent[i, j]:.0f}", ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    return fig
