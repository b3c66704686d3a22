"""Drawing detections: boxes, class names, scores and masks on an image, one stable colour per class."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from detcore.structures import Instances


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour for class ``label`` (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _to_rgb_array(image: str | Path | np.ndarray, bgr: bool) -> np.ndarray:
    if isinstance(image, (str, Path)):
        from detcore.data.image_io import imread

        # decoded as the pipeline decodes it (OpenCV, EXIF rotation), so the boxes line up
        return imread(str(image), channel_order="rgb")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array[:, :, ::-1].copy() if bgr else array.copy()


def _masks_as_bool(masks: object, count: int, shape: tuple[int, int]) -> np.ndarray | None:
    if masks is None:
        return None
    if isinstance(masks, torch.Tensor):
        array = masks.detach().cpu().numpy()
    elif hasattr(masks, "to_ndarray"):
        array = masks.to_ndarray()
    else:
        array = np.asarray(masks)
    if array.shape[0] != count or tuple(array.shape[1:]) != shape:
        raise ValueError(
            f"masks of shape {array.shape} do not match {count} instances on an image of {shape}"
        )
    return array.astype(bool)


def show_result(
    image: str | Path | np.ndarray,
    instances: Instances,
    class_names: Sequence[str] | None = None,
    score_thr: float = 0.3,
    out_file: str | Path | None = None,
    bgr: bool = True,
    mask_alpha: float = 0.5,
    thickness: int = 2,
) -> np.ndarray:
    """Draw ``instances`` (original-image coordinates) on ``image`` and return the RGB ``uint8`` result.

    ``image`` is a path or an ``(H, W, 3)`` array, BGR by default as detcore's loaders produce
    (``bgr=False`` for RGB arrays). Instances with ``scores`` below ``score_thr`` are left out;
    ``masks`` (bool ``(N, H, W)`` tensor, array or mask structure) are blended in with ``mask_alpha``.
    With ``out_file`` the picture is also written there (format from the suffix).
    """
    canvas = _to_rgb_array(image, bgr)
    height, width = canvas.shape[:2]
    boxes = (
        instances.bboxes.detach().cpu().numpy().reshape(-1, 4)
        if instances.has("bboxes")
        else np.zeros((0, 4))
    )
    count = len(boxes)
    labels = (
        instances.labels.detach().cpu().numpy()
        if instances.has("labels")
        else np.zeros(count, dtype=np.int64)
    )
    scores = instances.scores.detach().cpu().numpy() if instances.has("scores") else None
    keep = np.ones(count, dtype=bool) if scores is None else scores >= score_thr
    masks = _masks_as_bool(instances.get("masks"), count, (height, width))
    # lowest score first, so the most confident instance ends up on top where they overlap
    order = (
        np.flatnonzero(keep) if scores is None else [i for i in np.argsort(scores, kind="stable") if keep[i]]
    )

    if masks is not None:
        blended = canvas.astype(np.float32)
        for i in order:
            color = np.array(class_color(int(labels[i])), dtype=np.float32)
            m = masks[i]
            blended[m] = blended[m] * (1 - mask_alpha) + color * mask_alpha
        canvas = blended.round().astype(np.uint8)

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        x1, x2 = min(x1, x2), max(x1, x2)  # a degenerate (x2 < x1) box is drawn, not refused
        y1, y2 = min(y1, y2), max(y1, y2)
        color = class_color(int(labels[i]))
        draw.rectangle([x1, y1, x2, y2], outline=color, width=thickness)
        label = int(labels[i])
        name = (
            class_names[label] if class_names is not None and label < len(class_names) else f"class {label}"
        )
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y1 - th - 4 if y1 - th - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + tw + 4, ty + th + 4], fill=color)
        draw.text((x1 + 2, ty + 2 - top), text, fill=(0, 0, 0), font=font)
    result = np.asarray(picture)
    if out_file is not None:
        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        picture.save(out_file)
    return result
