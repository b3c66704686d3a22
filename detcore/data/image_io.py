"""Image decoding and the geometric primitives the transforms use, on HWC NumPy arrays.

Decoding and resizing go through OpenCV, as the reference's (mmcv's) ``imfrombytes`` / ``imresize``
do, so that the pixels are bit-identical to the reference's:

- :func:`imread` decodes with ``cv2.imdecode`` and returns ``uint8`` arrays in **BGR** order
  (``(H, W, 3)``; ``(H, W)`` for grayscale), or RGB with ``channel_order="rgb"``. Pillow is used only
  for files OpenCV cannot decode, with a warning that names the file.
- :func:`imresize` is ``cv2.resize``: ``bilinear`` is ``INTER_LINEAR`` (half-pixel centres,
  OpenCV's fixed-point weights for ``uint8``), ``nearest`` is ``INTER_NEAREST``
  (``src = floor(dst * in / out)``). Arrays OpenCV cannot resize (``bool``, ``int64``, more than
  512 channels) are resized nearest by a NumPy version of the same rule (other modes refuse them).
- :func:`rescale_size` is the reference's ratio-keeping size rule: ``s = min(long / max(h, w),
  short / min(h, w))``, new size ``(int(w * s + 0.5), int(h * s + 0.5))``.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Sequence, Union

import cv2
import numpy as np

cv2.setNumThreads(0)  # as the reference's workers do; results do not depend on it

Scale = Union[float, int, Sequence[int]]

#: ``color_type`` (the reference's ``LoadImageFromFile`` flag) -> ``cv2.imdecode`` flag.
IMREAD_FLAGS = {
    "color": cv2.IMREAD_COLOR,
    "grayscale": cv2.IMREAD_GRAYSCALE,
    "unchanged": cv2.IMREAD_UNCHANGED,
    "color_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR,
    "grayscale_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_GRAYSCALE,
}

#: interpolation name (the reference's spelling) -> ``cv2.resize`` flag.
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

_CV2_RESIZE_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.float32, np.float64)


class ImageReadError(OSError):
    """An image file is missing, unreadable or corrupt."""


def imfrombytes(
    data: bytes, color_type: str = "color", channel_order: str = "bgr", source: str = "<bytes>"
) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, ...) -> ``uint8`` array; see :func:`imread`.

    ``source`` names the data in messages. Raises :class:`ImageReadError` when neither OpenCV nor
    Pillow can decode it, ``ValueError`` for an unknown ``color_type`` / ``channel_order``.
    """
    if color_type not in IMREAD_FLAGS:
        raise ValueError(f"color_type must be one of {sorted(IMREAD_FLAGS)}, got {color_type!r}")
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, IMREAD_FLAGS[color_type]) if buf.size else None
    if img is None:
        img = _pillow_decode(data, color_type, source)
    if channel_order == "rgb" and img.ndim == 3 and img.shape[2] in (3, 4):
        order = [2, 1, 0] + ([3] if img.shape[2] == 4 else [])
        img = img[:, :, order]
    return np.ascontiguousarray(img)


def _pillow_decode(data: bytes, color_type: str, source: str) -> np.ndarray:
    """Fallback for formats OpenCV cannot read; returns BGR like OpenCV (no EXIF rotation)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode.startswith(("I", "F")) and not color_type.startswith("unchanged"):
                im = Image.fromarray(_to_uint8(np.asarray(im)))  # Pillow's convert() would saturate
            if color_type.startswith("color"):
                arr = np.asarray(im.convert("RGB"))[:, :, ::-1]
            elif color_type.startswith("grayscale"):
                arr = np.asarray(im.convert("L"))
            else:
                arr = np.asarray(im)
                if arr.ndim == 3 and arr.shape[2] in (3, 4):
                    arr = arr[:, :, [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]
            fmt = im.format
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageReadError(
            f"cannot decode image {source}: OpenCV cannot read it and Pillow fails with "
            f"{type(exc).__name__}: {exc}"
        ) from None
    warnings.warn(
        f"{source}: OpenCV cannot decode this {fmt} file; decoded with Pillow instead, whose pixels "
        "may differ from the reference's (convert the file to PNG or JPEG for identical pixels)",
        stacklevel=3,
    )
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """A high-bit-depth single-channel image scaled to 8 bits as OpenCV's decoder does (``v >> 8``
    for 16-bit data; 32-bit integer data with larger values and float data by their maximum)."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        return (arr.astype(np.uint32) >> 8).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = arr.max() if arr.size else 0.0
    scale = 255.0 if top <= 1.0 else 255.0 / top
    return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)


def imread(path: str, color_type: str = "color", channel_order: str = "bgr") -> np.ndarray:
    """Read an image file into a NumPy array, as the reference's ``LoadImageFromFile`` does.

    ``color_type``: ``"color"`` -> ``uint8 (H, W, 3)``; ``"grayscale"`` -> ``uint8 (H, W)``;
    ``"unchanged"`` -> the file's own channels and depth (``uint16`` PNGs stay ``uint16``);
    ``*_ignore_orientation`` variants skip the EXIF rotation. ``channel_order``: ``"bgr"`` (the
    reference's default) or ``"rgb"``. Raises :class:`ImageReadError` when the file is missing or
    cannot be decoded.
    """
    if not os.path.isfile(path):
        raise ImageReadError(f"image file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from None
    return imfrombytes(data, color_type, channel_order, source=path)


def imwrite(img: np.ndarray, path: str) -> None:
    """Write a BGR image (or a single-channel map) with OpenCV; the format follows the suffix."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ext = os.path.splitext(path)[1] or ".png"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img))
    if not ok:
        raise OSError(f"OpenCV cannot encode an image of shape {img.shape} dtype {img.dtype} as {ext}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


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
    """Resize ``img`` (``(H, W)`` or ``(H, W, C)``) to ``size = (w, h)`` with ``cv2.resize``; keeps the
    dtype and the number of dimensions."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"imresize: target size (w, h) = {(w, h)} must be positive")
    channels = img.shape[2] if img.ndim == 3 else 1
    if img.dtype.type in _CV2_RESIZE_DTYPES and channels <= 512:
        out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=INTERPOLATIONS[interpolation])
        return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out
    if interpolation != "nearest":
        raise TypeError(
            f"imresize: OpenCV cannot resize a {img.dtype} array with {channels} channels; "
            f"only 'nearest' works for it, not {interpolation!r}"
        )
    return _nearest_numpy(img, w, h)


def _nearest_numpy(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """``cv2.INTER_NEAREST``'s sampling (``floor(dst * in / out)``) for dtypes OpenCV does not take."""
    ys = np.minimum(np.floor(np.arange(h) * (img.shape[0] / h)).astype(np.int64), img.shape[0] - 1)
    xs = np.minimum(np.floor(np.arange(w) * (img.shape[1] / w)).astype(np.int64), img.shape[1] - 1)
    return np.ascontiguousarray(img[ys][:, xs])


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
