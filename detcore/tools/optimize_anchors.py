"""Anchor shapes fitted to a dataset's boxes (``detcore optimize-anchors``).

Boxes are compared by their shape only: the IoU of two boxes sharing a centre,
``min(w1, w2) * min(h1, h2) / (w1 h1 + w2 h2 - min(w1, w2) * min(h1, h2))``. The quality of a set of
anchors is the mean over the boxes of their best IoU with an anchor. Two searches:

- ``k-means`` (darknet's anchor clustering): assign every box to the anchor it overlaps most, move
  each anchor to the mean shape of its boxes, until no assignment changes;
- ``differential_evolution``: minimise ``1 - mean best IoU`` over the anchors' widths and heights
  (DE/rand/1/bin, within the boxes' range of shapes).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from detcore.errors import DetcoreError


def centered_iou(shapes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU ``(N, K)`` of ``(N, 2)`` box shapes and ``(K, 2)`` anchor shapes (w, h) sharing a centre."""
    inter = np.minimum(shapes[:, None, 0], anchors[None, :, 0]) * np.minimum(
        shapes[:, None, 1], anchors[None, :, 1]
    )
    union = shapes[:, None].prod(-1) + anchors[None].prod(-1) - inter
    return inter / np.maximum(union, 1e-12)


def mean_best_iou(shapes: np.ndarray, anchors: np.ndarray) -> float:
    return float(centered_iou(shapes, anchors).max(1).mean())


def _by_area(anchors: np.ndarray) -> np.ndarray:
    return anchors[np.argsort(anchors.prod(1), kind="stable")]


def kmeans_anchors(
    shapes: np.ndarray, num_anchors: int, iters: int = 1000, seed: int = 0
) -> tuple[np.ndarray, float]:
    """``(anchors (K, 2) by increasing area, mean best IoU)`` by IoU k-means from ``K`` random boxes."""
    _check(shapes, num_anchors)
    rng = np.random.default_rng(seed)
    anchors = shapes[rng.choice(len(shapes), num_anchors, replace=False)].astype(np.float64)
    assigned = np.full(len(shapes), -1)
    for _ in range(iters):
        new = centered_iou(shapes, anchors).argmax(1)
        if np.array_equal(new, assigned):
            break
        assigned = new
        for k in range(num_anchors):
            members = shapes[assigned == k]
            if len(members):  # an anchor that lost all its boxes stays where it is
                anchors[k] = members.mean(0)
    anchors = _by_area(anchors)
    return anchors, mean_best_iou(shapes, anchors)


def de_anchors(
    shapes: np.ndarray,
    num_anchors: int,
    iters: int = 1000,
    seed: int = 0,
    population: int = 15,
    mutation: float = 0.5,
    crossover: float = 0.7,
    tol: float = 1e-6,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, float]:
    """``(anchors by increasing area, mean best IoU)`` by differential evolution; ``population`` times
    ``2 K`` candidates, stopping after ``iters`` generations or when the population's objective spread
    falls under ``tol``."""
    _check(shapes, num_anchors)
    rng = np.random.default_rng(seed)
    low = np.tile(shapes.min(0), num_anchors).astype(np.float64)
    high = np.tile(shapes.max(0), num_anchors).astype(np.float64)
    dims = 2 * num_anchors
    size = max(population * dims, 5)

    def cost(x: np.ndarray) -> float:
        return 1.0 - mean_best_iou(shapes, x.reshape(-1, 2))

    pop = low + rng.random((size, dims)) * (high - low)
    costs = np.array([cost(x) for x in pop])
    for step in range(1, iters + 1):
        for i in range(size):
            picks = rng.choice(size - 1, 3, replace=False)
            a, b, c = pop[picks + (picks >= i)]  # three distinct candidates other than i
            mutant = np.clip(a + mutation * (b - c), low, high)
            cross = rng.random(dims) < crossover
            cross[rng.integers(dims)] = True
            trial = np.where(cross, mutant, pop[i])
            trial_cost = cost(trial)
            if trial_cost <= costs[i]:
                pop[i], costs[i] = trial, trial_cost
        if on_step is not None:
            on_step(step, float(costs.min()))
        if costs.max() - costs.min() < tol:
            break
    anchors = _by_area(pop[costs.argmin()].reshape(-1, 2))
    return anchors, mean_best_iou(shapes, anchors)


def _check(shapes: np.ndarray, num_anchors: int) -> None:
    if shapes.ndim != 2 or shapes.shape[1] != 2:
        raise DetcoreError(f"optimize-anchors: box shapes must be (N, 2), got {shapes.shape}")
    if num_anchors < 1 or len(shapes) < num_anchors:
        raise DetcoreError(f"optimize-anchors: {len(shapes)} boxes cannot place {num_anchors} anchors")


def dataset_box_shapes(dataset: Any, input_shape: Sequence[int]) -> np.ndarray:
    """``(N, 2)`` widths and heights of every ground-truth box of ``dataset``, each image rescaled
    with its aspect ratio kept to fit ``input_shape`` (W, H), as the keep-ratio Resize does."""
    while not hasattr(dataset, "data_infos") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # RepeatDataset / ClassBalancedDataset wrappers
    in_w, in_h = input_shape
    shapes = []
    for index, info in enumerate(dataset.data_infos):
        boxes = np.asarray(dataset.get_ann_info(index)["bboxes"], dtype=np.float64).reshape(-1, 4)
        if not len(boxes):
            continue
        scale = min(in_w / info["width"], in_h / info["height"])
        wh = (boxes[:, 2:] - boxes[:, :2]) * scale
        shapes.append(wh[(wh > 0).all(1)])
    if not shapes:
        raise DetcoreError("optimize-anchors: the dataset has no ground-truth boxes")
    return np.concatenate(shapes)
