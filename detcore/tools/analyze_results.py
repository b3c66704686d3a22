"""Per-image AP and pictures of the best and worst images (``detcore analyze-results``).

An image's AP is the mean over IoU thresholds 0.50:0.05:0.95 of the VOC-style area mAP of that image
alone (classes without ground truth in the image do not count), as the reference's tool ranks images.
An image without ground truth has AP 1 if it has no detection above the score threshold, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detcore.evaluation.mean_ap import eval_map
from detcore.tools.results import ImageResult, ImageTruth

IOU_THRS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


@dataclass(frozen=True)
class ImageScore:
    img_id: object
    filename: str | None
    ap: float


def image_ap(
    result: ImageResult, truth: ImageTruth, num_classes: int, score_thr: float = 0.0,
    iou_thrs: Sequence[float] = IOU_THRS,
) -> float:  # fmt: skip
    """The image's AP averaged over ``iou_thrs`` (see the module docstring)."""
    keep = result.scores >= score_thr
    boxes, scores, labels = result.bboxes[keep], result.scores[keep], result.labels[keep]
    if not len(truth.labels):
        return 0.0 if len(labels) else 1.0
    dets = [np.concatenate([boxes[labels == c], scores[labels == c, None]], 1) for c in range(num_classes)]
    ann = {"bboxes": truth.bboxes, "labels": truth.labels, "bboxes_ignore": truth.bboxes_ignore}
    return float(np.mean([eval_map([dets], [ann], thr, num_classes=num_classes)[0] for thr in iou_thrs]))


def rank_images(
    pairs: Sequence[tuple[ImageResult, ImageTruth]], num_classes: int, score_thr: float = 0.0
) -> list[ImageScore]:
    """Every image's AP, best first (ties keep the results' order)."""
    scores = [
        ImageScore(r.img_id, r.filename or t.filename, image_ap(r, t, num_classes, score_thr))
        for r, t in pairs
    ]
    return sorted(scores, key=lambda s: -s.ap)


def comparison_image(
    image_path: str,
    result: ImageResult,
    truth: ImageTruth,
    classes: Sequence[str],
    score_thr: float = 0.3,
    title: str = "",
) -> Any:
    """Ground truth (left) beside the predictions (right) of one image, as a PIL image."""
    import torch
    from PIL import Image, ImageDraw

    from detcore.data.image_io import imread
    from detcore.structures import Instances
    from detcore.visualization import show_result

    image = imread(image_path)
    gt = Instances(bboxes=torch.from_numpy(truth.bboxes), labels=torch.from_numpy(truth.labels))
    pred = Instances(
        bboxes=torch.from_numpy(result.bboxes),
        labels=torch.from_numpy(result.labels),
        scores=torch.from_numpy(result.scores),
    )
    left = show_result(image, gt, classes)
    right = show_result(image, pred, classes, score_thr=score_thr)
    height, width = left.shape[:2]
    band = 16
    canvas = Image.new("RGB", (2 * width + 8, height + band), (255, 255, 255))
    canvas.paste(Image.fromarray(left), (0, band))
    canvas.paste(Image.fromarray(right), (width + 8, band))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), f"ground truth {title}".strip(), fill=(0, 0, 0))
    draw.text((width + 10, 2), f"predictions (score >= {score_thr:g})", fill=(0, 0, 0))
    return canvas


def draw_comparison(
    image_path: str,
    result: ImageResult,
    truth: ImageTruth,
    classes: Sequence[str],
    out_file: str | Path,
    score_thr: float = 0.3,
    title: str = "",
) -> Path:
    """:func:`comparison_image` written to ``out_file``."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    comparison_image(image_path, result, truth, classes, score_thr, title).save(out_file)
    return out_file
