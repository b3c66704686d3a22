"""Image reading and the geometric primitives the transforms use, on HWC NumPy arrays.

Images are read with Pillow and returned as the reference returns them: ``uint8`` arrays in **BGR**
channel order, shape ``(H, W, 3)`` (``(H, W)`` for grayscale).

Resizing follows the reference's numerics (``mmcv.imrescale`` / ``imresize`` with OpenCV): the new
size of a ratio-keeping rescale is ``(int(w * s + 0.5), int(h * s + 0.5))`` with
``s = min(long / max(h, w), short / min(h, w))``. Bilinear resampling is done with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)``, which
samples the same source positions as ``cv2.INTER_LINEAR``; values may differ from OpenCV's
fixed-point arithmetic by one grey level, so outputs are not bit-identical to the reference.
Nearest resampling (masks, segmentation maps) uses ``floor(dst * in / out)`` like ``cv2.INTER_NEAREST``.
When OpenCV is importable it is used instead (bit-identical to the reference).
"""

from __future__ import annotations

import io
import os
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

try:  # optional
    import cv2  # type: ignore

    cv2.setNumThreads(0)
except Exception:  # pragma: no cover - cv2 absent in the default environment
    cv2 = None

from PIL import Image

Scale = Union[float, int, Sequence[int]]


class ImageReadError(OSError):
    """An image file is missing, unreadable or corrupt."""


def imread(path: str, color_type: str = "color") -> np.ndarray:
    """Read an image file into a NumPy array.

    ``color_type``: ``"color"`` -> ``uint8 (H, W, 3)`` BGR; ``"grayscale"`` -> ``uint8 (H, W)``;
    ``"unchanged"`` -> the file's own channels (RGB(A) reordered to BGR(A)).
    Raises :class:`ImageReadError` when the file is missing or cannot be decoded.
    """
    if not os.path.isfile(path):
        raise ImageReadError(f"image file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if color_type == "color":
                arr = np.asarray(im.convert("RGB"))[:, :, ::-1]
            elif color_type == "grayscale":
                arr = np.asarray(im.convert("L"))
            elif color_type == "unchanged":
                arr = np.asarray(im)
                if arr.ndim == 3 and arr.shape[2] in (3, 4):
                    order = [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])
                    arr = arr[:, :, order]
            else:
                raise ValueError(
                    f"color_type must be 'color', 'grayscale' or 'unchanged', got {color_type!r}"
                )
    except ValueError:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageReadError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from None
    return np.ascontiguousarray(arr)


def imwrite(img: np.ndarray, path: str) -> None:
    """Write a BGR ``uint8`` image (or a single-channel map) with Pillow; the format follows the suffix."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if img.ndim == 3:
        img = img[:, :, ::-1]
    Image.fromarray(np.ascontiguousarray(img)).save(path)


def rescale_size(old_size: tuple[int, int], scale: Scale) -> tuple[tuple[int, int], float]:
    """``(w, h)`` and a scale (a factor, or ``(long, short)`` edges) -> new ``(w, h)`` and the factor."""
    w, h = old_size
    if isinstance(scale, (float, int)):
        if scale <= 0:
            raise ValueError(f"invalid scale {scale}, must be positive")
        factor = float(scale)
    elif isinstance(scale, (tuple, list)) and len(scale) == 2:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
    else:
        raise TypeError(f"scale must be a number or a (long, short) pair, got {scale!r}")
    return (int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)), factor


def imresize(img: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """Resize ``img`` (``(H, W)`` or ``(H, W, C)``) to ``size = (w, h)``; keeps the dtype."""
    w, h = int(size[0]), int(size[1])
    if img.shape[0] == h and img.shape[1] == w:
        return img.copy()
    if cv2 is not None:  # pragma: no cover
        flag = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
        return cv2.resize(img, (w, h), interpolation=flag)
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    if interpolation == "nearest":
        ys = np.minimum((np.arange(h) * (img.shape[0] / h)).astype(np.int64), img.shape[0] - 1)
        xs = np.minimum((np.arange(w) * (img.shape[1] / w)).astype(np.int64), img.shape[1] - 1)
        return img[ys][:, xs].copy()
    squeeze = img.ndim == 2
    arr = img[:, :, None] if squeeze else img
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()
    out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0]
    if img.dtype == np.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    out_np = out.permute(1, 2, 0).numpy().astype(img.dtype, copy=False)
    return np.ascontiguousarray(out_np[:, :, 0] if squeeze else out_np)


def imrescale(
    img: np.ndarray, scale: Scale, interpolation: str = "bilinear", return_scale: bool = False
) -> np.ndarray | tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio (see :func:`rescale_size`)."""
    h, w = img.shape[:2]
    new_size, factor = rescale_size((w, h), scale)
    out = imresize(img, new_size, interpolation)
    return (out, factor) if return_scale else out


def imflip(img: np.ndarray, direction: str = "horizontal") -> np.ndarray:
    """Flip an ``(H, W[, C])`` array: ``horizontal`` | ``vertical`` | ``diagonal`` (both)."""
    if direction == "horizontal":
        return np.ascontiguousarray(img[:, ::-1])
    if direction == "vertical":
        return np.ascontiguousarray(img[::-1])
    if direction == "diagonal":
        return np.ascontiguousarray(img[::-1, ::-1])
    raise ValueError(f"flip direction must be horizontal, vertical or diagonal, got {direction!r}")


def impad(img: np.ndarray, shape: tuple[int, int], pad_val: float | Sequence[float] = 0) -> np.ndarray:
    """Pad ``img`` at the bottom and right to ``shape = (h, w)`` with ``pad_val``."""
    h, w = int(shape[0]), int(shape[1])
    if h < img.shape[0] or w < img.shape[1]:
        raise ValueError(f"pad shape {(h, w)} is smaller than the image {img.shape[:2]}")
    out = np.empty((h, w) + img.shape[2:], dtype=img.dtype)
    out[...] = np.asarray(pad_val, dtype=img.dtype) if not np.isscalar(pad_val) else pad_val
    out[: img.shape[0], : img.shape[1]] = img
    return out


def impad_to_multiple(img: np.ndarray, divisor: int, pad_val: float = 0) -> np.ndarray:
    """Pad bottom/right so that both sides are multiples of ``divisor``."""
    h = int(np.ceil(img.shape[0] / divisor)) * divisor
    w = int(np.ceil(img.shape[1] / divisor)) * divisor
    return impad(img, (h, w), pad_val)
