"""COCO error breakdown per category (``detcore coco-error-analysis``), after Hoiem et al.'s analysis as
the COCO toolkit's ``analyze()`` defines it.

For each category, precision-recall curves (101 recall points, up to 100 detections per image) under
successively more forgiving rules; the area under each is its AP:

- ``C75``: PR at IoU 0.75; ``C50``: at IoU 0.50; ``Loc``: at IoU 0.10 (localisation errors forgiven,
  duplicate detections not);
- ``Sim``: also forgiving confusions with categories of the same supercategory (their boxes become
  ignored regions of this category), at IoU 0.10;
- ``Oth``: also forgiving confusions with any other category;
- ``BG``: also forgiving background false positives (precision 1 wherever a detection is recalled);
- ``FN``: also forgiving missed boxes (precision 1 everywhere).

The gap between two neighbouring curves is the AP lost to that kind of error.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detcore.errors import DetcoreError

ERRORS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
AREAS = ("all", "small", "medium", "large")


@dataclass
class ErrorBreakdown:
    """``precision[e, r, k, a]``: precision of error level ``e`` (ERRORS) at recall point ``r`` (101)
    for category ``k`` and area range ``a`` (AREAS); ``-1`` where a category has no ground truth."""

    cat_names: list[str]
    precision: np.ndarray

    def ap(self, error: str, cat: int | None = None, area: str = "all") -> float:
        """Mean precision over recall points (COCO AP) of one level, one category or all of them."""
        p = self.precision[ERRORS.index(error), :, :, AREAS.index(area)]
        p = p if cat is None else p[:, [cat]]
        valid = p[:, (p > -1).all(0)]
        return float(valid.mean()) if valid.size else float("nan")

    def table(self, area: str = "all") -> dict[str, dict[str, float]]:
        rows = {"overall": {e: self.ap(e, area=area) for e in ERRORS}}
        for k, name in enumerate(self.cat_names):
            rows[name] = {e: self.ap(e, k, area) for e in ERRORS}
        return rows


def _quiet(fn: Any, *args: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _precision(gt: Any, dt: Any, cat_ids: Sequence[int], iou: float, iou_type: str) -> np.ndarray:
    """COCOeval precision ``(101, len(cat_ids), 4)`` at one IoU threshold, 100 detections per image."""
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt, dt, iou_type)
    ev.params.iouThrs = np.array([iou])
    ev.params.maxDets = [100]
    ev.params.catIds = list(cat_ids)
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    return ev.eval["precision"][0, :, :, :, 0]


def _forgiving(gt_dataset: dict, cat_id: int, others: set[int]) -> Any:
    """A ground truth where the boxes of ``others`` are ignored (crowd) regions of ``cat_id``, so that
    detections of ``cat_id`` on them are neither true nor false positives."""
    from pycocotools.coco import COCO

    data = copy.deepcopy(gt_dataset)
    for ann in data["annotations"]:
        if ann["category_id"] in others:
            ann.update(category_id=cat_id, iscrowd=1, ignore=1)
    coco = COCO()
    coco.dataset = data
    _quiet(coco.createIndex)
    return coco


def analyze(gt: Any, results: list[dict], iou_type: str = "bbox") -> ErrorBreakdown:
    """The breakdown of COCO-format ``results`` against ``gt`` (a pycocotools COCO)."""
    if not results:
        raise DetcoreError("coco-error-analysis: the results hold no detection")
    dt = _quiet(gt.loadRes, copy.deepcopy(results))
    cat_ids = sorted(gt.getCatIds())
    cats = gt.loadCats(cat_ids)
    precision = np.full((len(ERRORS), 101, len(cat_ids), len(AREAS)), -1.0)
    for e, iou in enumerate((0.75, 0.5, 0.1)):
        precision[e] = _precision(gt, dt, cat_ids, iou, iou_type)
    for k, cat in enumerate(cats):
        siblings = {c["id"] for c in cats if c.get("supercategory") == cat.get("supercategory")} - {cat["id"]}
        everyone = set(cat_ids) - {cat["id"]}
        own = [copy.deepcopy(r) for r in results if r["category_id"] == cat["id"]]
        for e, others in ((3, siblings), (4, everyone)):
            if not own:  # no detection of this category: nothing to forgive
                precision[e, :, k] = np.where(precision[2, :, k] == -1, -1.0, 0.0)
                continue
            forgiving = _forgiving(gt.dataset, cat["id"], others)
            dt_k = _quiet(forgiving.loadRes, own)
            precision[e, :, k] = _precision(forgiving, dt_k, [cat["id"]], 0.1, iou_type)[:, 0]
    no_gt = precision[2] == -1
    precision[5] = np.where(no_gt, -1.0, (precision[4] > 0).astype(float))
    precision[6] = np.where(no_gt, -1.0, 1.0)
    return ErrorBreakdown([c["name"] for c in cats], precision)


def plot_breakdown(breakdown: ErrorBreakdown, out_dir: str | Path, area: str = "all") -> list[Path]:
    """One stacked PR picture per category and one overall (``<name>-<area>.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recall = np.linspace(0, 1, 101)
    colors = ["#ffffff", "#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd"]
    written = []
    for k, name in [(None, "overall"), *enumerate(breakdown.cat_names)]:
        a = AREAS.index(area)
        p = breakdown.precision[:, :, :, a] if k is None else breakdown.precision[:, :, [k], a]
        valid = (p > -1).all((0, 1))
        if not valid.any():
            continue
        curves = p[:, :, valid].mean(2)  # (errors, 101)
        fig, ax = plt.subplots(figsize=(5, 4))
        lower = np.zeros(101)
        for e, error in enumerate(ERRORS):
            upper = np.maximum(curves[e], lower)
            ap = breakdown.ap(error, k, area)
            ax.fill_between(recall, lower, upper, color=colors[e], label=f"[{ap:.3f}] {error}", lw=0)
            ax.plot(recall, upper, color="black", lw=0.5)
            lower = upper
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="recall", ylabel="precision", title=f"{name} ({area})")
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{name.replace('/', '_')}-{area}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def coco_results_of(path: str | Path, gt: Any) -> list[dict]:
    """COCO-format detections from ``path``: a COCO results list (``image_id``, ``category_id``,
    ``bbox`` xywh, ``score``), or the JSON of ``detcore test --out``, whose labels ``0..C-1`` are taken
    as the annotation file's categories in id order."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DetcoreError(f"{path}: cannot read results ({exc})") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        cat_ids = sorted(gt.getCatIds())
        rows = []
        for row in data["results"]:
            for (x1, y1, x2, y2), score, label in zip(row["bboxes"], row["scores"], row["labels"]):
                if not 0 <= label < len(cat_ids):
                    raise DetcoreError(
                        f"{path}: img_id {row.get('img_id')}: label {label} but the annotations "
                        f"have {len(cat_ids)} categories"
                    )
                rows.append({"image_id": row["img_id"], "category_id": cat_ids[label],
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})  # fmt: skip
        return rows
    raise DetcoreError(f"{path}: expected a COCO results list or the JSON of `detcore test --out`")
