"""Image corruptions of the robustness benchmark for detection (Michaelis et al. 2019, after Hendrycks and
Dietterich's ImageNet-C), in numpy and OpenCV, at severities 1..5.

Every function takes an RGB or BGR ``uint8`` image ``(H, W, 3)`` (the channel order does not matter
except for ``brightness`` and ``saturate``, which assume BGR as detcore's loader gives) and a
``numpy.random.Generator``, and returns a ``uint8`` image of the same shape. The severity parameters
are the benchmark's tables. Two differ from it by necessity: ``frost`` blends a frost texture generated
here (the benchmark ships photographs of frost), and ``snow`` blurs its flakes with a line kernel
instead of ImageMagick's motion blur.

Families (:data:`FAMILIES`): noise, blur, weather, digital; :data:`BENCHMARK` is the 15 of the
benchmark, :data:`EXTRA` the 4 held-out ones.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _to_unit(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def _pick(table: list, severity: int):  # noqa: ANN202 - a row of a parameter table
    if not 1 <= severity <= len(table):
        raise ValueError(f"severity must be 1..{len(table)}, got {severity}")
    return table[severity - 1]


# -- noise -----------------------------------------------------------------------------------------------


def gaussian_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _pick([0.08, 0.12, 0.18, 0.26, 0.38], severity)
    x = _to_unit(img)
    return _to_uint8(x + rng.normal(0, sigma, x.shape))


def shot_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = _pick([60, 25, 12, 5, 3], severity)
    return _to_uint8(rng.poisson(_to_unit(img) * photons) / photons)


def impulse_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = _pick([0.03, 0.06, 0.09, 0.17, 0.27], severity)
    out = img.copy()
    hit = rng.random(img.shape) < amount  # salt and pepper per channel value, half each
    salt = rng.random(img.shape) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def speckle_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _pick([0.15, 0.2, 0.35, 0.45, 0.6], severity)
    x = _to_unit(img)
    return _to_uint8(x + x * rng.normal(0, sigma, x.shape))


# -- blur ------------------------------------------------------------------------------------------------


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    size = int(np.ceil(radius))
    if radius <= 8:
        ax = np.arange(-8, 9)
        ksize = (3, 3)
    else:
        ax = np.arange(-size, size + 1)
        ksize = (5, 5)
    xx, yy = np.meshgrid(ax, ax)
    kernel = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    kernel /= kernel.sum()
    return cv2.GaussianBlur(kernel, ksize=ksize, sigmaX=alias_blur)


def defocus_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = _pick([(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)], severity)
    return _to_uint8(cv2.filter2D(_to_unit(img), -1, _disk(radius, alias)))


def gaussian_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _pick([1, 2, 3, 4, 6], severity)
    return _to_uint8(cv2.GaussianBlur(_to_unit(img), (0, 0), sigma))


def glass_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, move every pixel to a random neighbour within ``delta`` (``iterations`` times), blur again.
    The benchmark swaps pixel pairs one by one in a Python loop; this gathers from random offsets in
    one step per iteration (the same local shuffling, seconds faster on a 1333x800 image)."""
    table = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)]
    sigma, delta, iterations = _pick(table, severity)
    x = cv2.GaussianBlur(_to_unit(img), (0, 0), sigma)
    h, w = x.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    for _ in range(iterations):
        dy = rng.integers(-delta, delta + 1, (h, w))
        dx = rng.integers(-delta, delta + 1, (h, w))
        x = x[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
    return _to_uint8(cv2.GaussianBlur(x, (0, 0), sigma))


def _line_kernel(radius: int, sigma: float, angle: float) -> np.ndarray:
    """A motion-blur kernel: a Gaussian-weighted line of ``2 radius + 1`` pixels at ``angle`` degrees."""
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float32)
    weights = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    kernel[radius, :] = weights  # horizontal, then rotated
    rotation = cv2.getRotationMatrix2D((radius, radius), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (size, size))
    return kernel / max(kernel.sum(), 1e-8)


def motion_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = _pick([(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)], severity)
    kernel = _line_kernel(radius, sigma, rng.uniform(-45, 45))
    return _to_uint8(cv2.filter2D(_to_unit(img), -1, kernel, borderType=cv2.BORDER_REFLECT))


def _zoom_centre(x: np.ndarray, factor: float) -> np.ndarray:
    h, w = x.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(x[top : top + ch, left : left + cw], (w, h), interpolation=cv2.INTER_LINEAR)


def zoom_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factors = _pick(
        [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
         np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)],
        severity,
    )  # fmt: skip
    x = _to_unit(img)
    out = x.copy()
    for factor in factors:
        out += _zoom_centre(x, float(factor))
    return _to_uint8(out / (len(factors) + 1))


# -- weather ---------------------------------------------------------------------------------------------


def _fractal(h: int, w: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``(h, w)`` fractal noise in [0, 1]: octaves of upsampled uniform noise on 2, 4, 8, ... cells,
    each octave's amplitude the previous one's divided by ``decay`` (the benchmark's plasma fractal
    has the same spectrum; its diamond-square construction is not reproduced)."""
    out = np.zeros((h, w), np.float32)
    amplitude, cells = 1.0, 2
    while cells <= 2 * max(h, w):
        noise = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        out += amplitude * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        amplitude, cells = amplitude / decay, cells * 2
    out -= out.min()
    return out / max(float(out.max()), 1e-12)


def fog(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = _pick([(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)], severity)
    h, w = img.shape[:2]
    x = _to_unit(img)
    top = x.max()
    x = x + strength * _fractal(h, w, decay, rng)[:, :, None]
    return _to_uint8(x * top / (top + strength))


def _frost_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Ice crystals: bright random line segments, thickened and blurred, over a faint frosted haze."""
    texture = np.zeros((h, w), np.float32)
    for _ in range(max(40, h * w // 400)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        length, angle = rng.uniform(3, max(h, w) / 10), rng.uniform(0, np.pi)
        x1, y1 = int(x0 + length * np.cos(angle)), int(y0 + length * np.sin(angle))
        cv2.line(texture, (int(x0), int(y0)), (x1, y1), float(rng.uniform(0.4, 1.0)), 1, cv2.LINE_AA)
    texture = cv2.GaussianBlur(texture, (0, 0), 0.8) + 0.35 * cv2.GaussianBlur(
        rng.random((h, w)).astype(np.float32), (0, 0), 3
    )
    texture = np.clip(texture / max(texture.max(), 1e-8), 0, 1)
    return np.repeat(texture[:, :, None], 3, 2) * np.array([0.95, 0.97, 1.0], np.float32)


def frost(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    image_weight, frost_weight = _pick([(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)], severity)
    h, w = img.shape[:2]
    return _to_uint8(image_weight * _to_unit(img) + frost_weight * _frost_texture(h, w, rng))


def snow(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, blend = _pick(
        [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
         (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
        severity,
    )  # fmt: skip
    x = _to_unit(img)
    h, w = x.shape[:2]
    flakes = _zoom_centre(rng.normal(mean, std, (h, w)).astype(np.float32), zoom)
    flakes[flakes < threshold] = 0
    flakes = cv2.filter2D(flakes, -1, _line_kernel(radius, sigma, rng.uniform(-135, -45)))
    grey = cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)[:, :, None] * 1.5 + 0.5
    x = blend * x + (1 - blend) * np.maximum(x, grey)
    flakes = flakes[:, :, None]
    return _to_uint8(x + flakes + np.rot90(flakes, 2))


# -- digital ---------------------------------------------------------------------------------------------


def brightness(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    delta = _pick([0.1, 0.2, 0.3, 0.4, 0.5], severity)
    hsv = cv2.cvtColor(_to_unit(img), cv2.COLOR_BGR2HSV)
    hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0, 1)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def saturate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale, shift = _pick([(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)], severity)
    hsv = cv2.cvtColor(_to_unit(img), cv2.COLOR_BGR2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def contrast(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = _pick([0.4, 0.3, 0.2, 0.1, 0.05], severity)
    x = _to_unit(img)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - mean) * factor + mean)


def elastic_transform(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Resample along a smooth random displacement field (no affine part, so objects stay on their boxes).

    The field is uniform noise in ``+-0.005 H`` per pixel, Gaussian-smoothed with sigma 1% of the image
    size along each axis (truncated at 3 sigma) and scaled by the severity's ``alpha``, as the detection
    benchmark's version of the corruption has it (ImageNet-C's table, with its affine jitter of up to a
    fifth of the image at severities 1-2, would move objects off their annotations).
    """
    alpha = _pick([12.5, 16.25, 21.25, 25.0, 30.0], severity)
    x = _to_unit(img)
    h, w = x.shape[:2]
    sigma_y, sigma_x = 0.01 * h, 0.01 * w
    ksize = (2 * int(np.ceil(3 * sigma_x)) + 1, 2 * int(np.ceil(3 * sigma_y)) + 1)
    reach = 0.005 * h

    def field() -> np.ndarray:
        noise = rng.uniform(-reach, reach, (h, w)).astype(np.float32)
        return cv2.GaussianBlur(noise, ksize, sigmaX=sigma_x, sigmaY=sigma_y,
                                borderType=cv2.BORDER_REFLECT) * alpha  # fmt: skip

    dx, dy = field(), field()
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return _to_uint8(cv2.remap(x, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = _pick([0.6, 0.5, 0.4, 0.3, 0.25], severity)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def jpeg_compression(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    quality = _pick([25, 18, 15, 10, 7], severity)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("jpeg_compression: OpenCV could not encode the image")
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED).reshape(img.shape)


def spatter(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mud or water drops: a thresholded blurred noise layer blended over the image."""
    loc, scale, blur, threshold, intensity, mud = _pick(
        [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
         (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)],
        severity,
    )  # fmt: skip
    x = _to_unit(img)
    h, w = x.shape[:2]
    layer = cv2.GaussianBlur(rng.normal(loc, scale, (h, w)).astype(np.float32), (0, 0), blur)
    layer[layer < threshold] = 0
    drops = np.clip(layer * intensity, 0, 1)[:, :, None]
    colour = np.float32([63, 42, 20]) / 255 if mud else np.float32([238, 195, 175]) / 255  # BGR
    return _to_uint8(x * (1 - drops) + colour * drops)


FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
BENCHMARK: tuple[str, ...] = tuple(name for names in FAMILIES.values() for name in names)
EXTRA: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTIONS: dict[str, Corruption] = {name: globals()[name] for name in BENCHMARK + EXTRA}


def corrupt(img: np.ndarray, name: str, severity: int, seed: int | None = None) -> np.ndarray:
    """``img`` with corruption ``name`` at ``severity`` (1..5; 0 returns the image unchanged)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity == 0:
        return img
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"corruption {name}: expects a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    return CORRUPTIONS[name](img, severity, np.random.default_rng(seed))
