"""Photometric transforms: they change pixel values only (boxes and masks are untouched)."""

from __future__ import annotations

from typing import Any, Sequence

import cv2
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
    """``float32`` BGR -> HSV with ``cv2.cvtColor``, as the reference: H in [0, 360), S = (max - min) /
    (|max| + FLT_EPSILON), V = max (values outside [0, 255], e.g. after a brightness shift, included)."""
    return cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_BGR2HSV)


def hsv2bgr(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`bgr2hsv` (``cv2.cvtColor``, ``float32``)."""
    return cv2.cvtColor(np.ascontiguousarray(img, dtype=np.float32), cv2.COLOR_HSV2BGR)


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
