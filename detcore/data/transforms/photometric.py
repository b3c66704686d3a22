"""Photometric transforms: they change pixel values only (boxes and masks are untouched)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class Normalize:
    """``img = (img[..., ::-1 if to_rgb] - mean) / std`` in ``float32``; ``mean``/``std`` are given in
    the output channel order (RGB when ``to_rgb``). Adds ``img_norm_cfg = {mean, std, to_rgb}``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_rgb: bool = True) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std must not contain zeros, got {list(std)}")
        self.to_rgb = to_rgb

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        stdinv = (1.0 / self.std.astype(np.float64)).astype(np.float32)
        for key in results.get("img_fields", ["img"]):
            img = results[key]
            if self.to_rgb and img.ndim == 3:
                img = img[..., ::-1]
            img = img.astype(np.float32)
            img -= self.mean
            img *= stdinv
            results[key] = img
        results["img_norm_cfg"] = dict(mean=self.mean.copy(), std=self.std.copy(), to_rgb=self.to_rgb)
        return results

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()}, to_rgb={self.to_rgb})"


def bgr2hsv(img: np.ndarray) -> np.ndarray:
    """``float32`` BGR -> HSV with OpenCV's float conventions: H in [0, 360), S in [0, 1], V = max."""
    b, g, r = img[..., 0], img[..., 1], img[..., 2]
    v = img.max(-1)
    mn = img.min(-1)
    diff = v - mn
    s = np.where(v > 0, diff / np.where(v > 0, v, 1), 0)
    safe = np.where(diff > 0, diff, 1)
    h = np.where(
        v == r, 60 * (g - b) / safe, np.where(v == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe)
    )
    h = np.where(diff > 0, h, 0)
    h = np.where(h < 0, h + 360, h)
    return np.stack([h, s, v], -1).astype(np.float32)


def hsv2bgr(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`bgr2hsv`."""
    h, s, v = img[..., 0], img[..., 1], img[..., 2]
    hh = (h % 360) / 60.0
    i = np.floor(hh).astype(np.int64) % 6
    f = hh - np.floor(hh)
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([b, g, r], -1).astype(np.float32)


class PhotoMetricDistortion:
    """SSD's colour jitter, each step with probability 1/2: brightness (+-``brightness_delta``),
    contrast (x ``contrast_range``, before or after the HSV steps), saturation (x ``saturation_range``),
    hue (+-``hue_delta`` degrees), random channel swap. Works on ``float32`` images (load with
    ``to_float32 = true``); a ``uint8`` image is converted."""

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        img = results["img"].astype(np.float32)
        rnd = np.random
        if rnd.randint(2):
            img += rnd.uniform(-self.brightness_delta, self.brightness_delta)
        mode = rnd.randint(2)
        if mode == 1 and rnd.randint(2):
            img *= rnd.uniform(self.contrast_lower, self.contrast_upper)
        hsv = bgr2hsv(img)
        if rnd.randint(2):
            hsv[..., 1] *= rnd.uniform(self.saturation_lower, self.saturation_upper)
        if rnd.randint(2):
            hsv[..., 0] += rnd.uniform(-self.hue_delta, self.hue_delta)
            hsv[..., 0][hsv[..., 0] > 360] -= 360
            hsv[..., 0][hsv[..., 0] < 0] += 360
        img = hsv2bgr(hsv)
        if mode == 0 and rnd.randint(2):
            img *= rnd.uniform(self.contrast_lower, self.contrast_upper)
        if rnd.randint(2):
            img = img[..., rnd.permutation(3)]
        results["img"] = np.ascontiguousarray(img)
        return results

    def __repr__(self) -> str:
        return (
            f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, "
            f"contrast_range=({self.contrast_lower}, {self.contrast_upper}), hue_delta={self.hue_delta})"
        )
