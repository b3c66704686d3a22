"""Predictions saved by ``detcore test --out`` paired with the ground truth of the config's test data.

The analysis tools (confusion matrix, per-image results, the report) read results through
:func:`load_results` and ground truth through :func:`ground_truth_of`, so they agree on what an
image, a class and a box are: boxes ``(N, 4)`` xyxy in original-image pixels, labels ``0..C-1`` in
the order of the config's classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detcore.errors import DetcoreError


@dataclass
class ImageResult:
    """One image's predictions (``bboxes`` (N, 4) xyxy, ``scores`` (N,), ``labels`` (N,))."""

    img_id: Any
    filename: str | None
    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class ImageTruth:
    """One image's ground truth: ``bboxes`` (M, 4) xyxy, ``labels`` (M,), crowd/ignored boxes apart."""

    img_id: Any
    filename: str | None
    bboxes: np.ndarray
    labels: np.ndarray
    bboxes_ignore: np.ndarray


def load_results(path: str | Path) -> tuple[list[ImageResult], dict[str, Any]]:
    """The per-image predictions and the metrics of a ``detcore test --out`` JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DetcoreError(f"{path}: no such results file (`detcore test ... --out` writes one)") from None
    except json.JSONDecodeError as exc:
        raise DetcoreError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise DetcoreError(f"{path}: expected the JSON of `detcore test --out` with a 'results' list")
    results = []
    for index, row in enumerate(data["results"]):
        try:
            bboxes = np.asarray(row["bboxes"], dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(row["scores"], dtype=np.float32).reshape(-1)
            labels = np.asarray(row["labels"], dtype=np.int64).reshape(-1)
        except (KeyError, TypeError, ValueError) as exc:
            raise DetcoreError(f"{path}: results[{index}]: bad bboxes/scores/labels ({exc})") from None
        if not len(bboxes) == len(scores) == len(labels):
            raise DetcoreError(
                f"{path}: results[{index}] (img_id {row.get('img_id')}): {len(bboxes)} boxes, "
                f"{len(scores)} scores and {len(labels)} labels"
            )
        results.append(ImageResult(row.get("img_id"), row.get("filename"), bboxes, scores, labels))
    return results, dict(data.get("metrics") or {})


def load_test_dataset(cfg: Any) -> Any:
    """The config's ``[data.test]`` dataset (without its pipeline: only annotations are needed)."""
    from detcore.data import build_dataset

    table = dict(cfg["data"]["test"])
    table.pop("pipeline", None)
    return build_dataset(table, where="data.test")


def ground_truth_of(dataset: Any) -> list[ImageTruth]:
    """Every image's ground truth, in the dataset's order."""
    truths = []
    for index, info in enumerate(dataset.data_infos):
        ann = dataset.get_ann_info(index)
        truths.append(
            ImageTruth(
                info.get("id"),
                info.get("filename"),
                np.asarray(ann["bboxes"], dtype=np.float32).reshape(-1, 4),
                np.asarray(ann["labels"], dtype=np.int64).reshape(-1),
                np.asarray(ann.get("bboxes_ignore", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4),
            )
        )
    return truths


def pair_with_truth(
    results: list[ImageResult], truths: list[ImageTruth], where: str = "results"
) -> list[tuple[ImageResult, ImageTruth]]:
    """Match results to ground truth by ``img_id``; an id the dataset lacks is an error naming it."""
    by_id = {truth.img_id: truth for truth in truths}
    pairs = []
    for result in results:
        if result.img_id not in by_id:
            raise DetcoreError(f"{where}: img_id {result.img_id!r} is not in the test dataset")
        pairs.append((result, by_id[result.img_id]))
    return pairs


def load_pairs(
    config: str | Path, results: str | Path, overrides: list[str] | None = None
) -> tuple[Any, list[tuple[ImageResult, ImageTruth]]]:
    """The config's test dataset and every saved result paired with its image's ground truth.

    The common first step of the analysis commands: ``config`` (with ``KEY=VALUE`` overrides) names
    the test data, ``results`` is a ``detcore test --out`` JSON file.
    """
    from detcore.config import load_config

    dataset = load_test_dataset(load_config(config, overrides or []))
    loaded, _ = load_results(results)
    return dataset, pair_with_truth(loaded, ground_truth_of(dataset), where=str(results))


def image_file(dataset: Any, result: ImageResult, truth: ImageTruth) -> Path | None:
    """The image file of a result: the path ``detcore test`` recorded, else the dataset's
    ``img_prefix`` joined with the annotation's file name; ``None`` when neither exists."""
    candidates = [result.filename]
    if truth.filename:
        prefix = getattr(dataset, "img_prefix", "") or ""
        candidates.append(str(Path(prefix, truth.filename)) if prefix else truth.filename)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
