"""Geometric transforms. Each moves the image and every entry of ``bbox_fields`` (``(N, 4)`` xyxy
pixel boxes), ``mask_fields`` (mask structures) and ``seg_fields`` (``(H, W)`` maps) the same way.

Randomness comes from ``numpy.random`` (seeded per DataLoader worker by the data loader).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from detcore.data.image_io import imflip, impad, impad_to_multiple, imrescale, imresize
from detcore.structures.boxes import Boxes


def _as_scales(img_scale: Any) -> list[tuple[int, int]] | None:
    """``[w, h]`` or ``[[w, h], ...]`` (TOML arrays) or tuples -> a list of int pairs."""
    if img_scale is None:
        return None
    if (
        isinstance(img_scale, (list, tuple))
        and len(img_scale) == 2
        and all(isinstance(v, (int, float)) for v in img_scale)
    ):
        return [(int(img_scale[0]), int(img_scale[1]))]
    scales = []
    for s in img_scale:
        if not (isinstance(s, (list, tuple)) and len(s) == 2):
            raise ValueError(
                f"img_scale entries must be pairs (w, h) / (long, short), got {s!r} in {img_scale!r}"
            )
        scales.append((int(s[0]), int(s[1])))
    if not scales:
        raise ValueError("img_scale is an empty list")
    return scales


class Resize:
    """Resize images, boxes, masks and segmentation maps.

    ``img_scale``: one scale or a list. With ``keep_ratio`` a scale is ``(long, short)`` edge limits
    (``scale_factor = min(long / max(h, w), short / min(h, w))``); without, it is the output ``(w, h)``.
    Several scales: ``multiscale_mode = "range"`` samples the long and short edges uniformly between
    the scales' extremes, ``"value"`` picks one scale. ``ratio_range = [lo, hi]`` multiplies the single
    scale by a uniform ratio. A ``scale`` already in the sample (set by ``MultiScaleFlipAug``) is used
    as is; a ``scale_factor`` there (without ``scale``) is turned into a scale.

    Adds ``scale``, ``scale_idx``, ``scale_factor`` (``float32 [w_scale, h_scale, w_scale, h_scale]``),
    ``keep_ratio``, ``pad_shape``; updates ``img``, ``img_shape`` and every field.
    Boxes are clipped to the new image when ``bbox_clip_border``.
    """

    def __init__(
        self,
        img_scale: Any = None,
        multiscale_mode: str = "range",
        ratio_range: Sequence[float] | None = None,
        keep_ratio: bool = True,
        bbox_clip_border: bool = True,
        override: bool = False,
    ) -> None:
        self.img_scale = _as_scales(img_scale)
        if multiscale_mode not in ("value", "range"):
            raise ValueError(f"Resize: multiscale_mode must be 'value' or 'range', got {multiscale_mode!r}")
        if ratio_range is not None and (self.img_scale is None or len(self.img_scale) != 1):
            raise ValueError("Resize: ratio_range needs exactly one img_scale")
        self.multiscale_mode = multiscale_mode
        self.ratio_range = tuple(ratio_range) if ratio_range is not None else None
        self.keep_ratio = keep_ratio
        self.bbox_clip_border = bbox_clip_border
        self.override = override

    def _random_scale(self, results: dict[str, Any]) -> None:
        if self.img_scale is None:
            raise ValueError("Resize: no img_scale given and the sample has no 'scale' or 'scale_factor'")
        idx: int | None
        if self.ratio_range is not None:
            lo, hi = self.ratio_range
            ratio = np.random.random_sample() * (hi - lo) + lo
            base = self.img_scale[0]
            scale, idx = (int(base[0] * ratio), int(base[1] * ratio)), None
        elif len(self.img_scale) == 1:
            scale, idx = self.img_scale[0], 0
        elif self.multiscale_mode == "range":
            longs = [max(s) for s in self.img_scale]
            shorts = [min(s) for s in self.img_scale]
            scale = (
                int(np.random.randint(min(longs), max(longs) + 1)),
                int(np.random.randint(min(shorts), max(shorts) + 1)),
            )
            idx = None
        else:
            idx = int(np.random.randint(len(self.img_scale)))
            scale = self.img_scale[idx]
        results["scale"] = scale
        results["scale_idx"] = idx

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        if "scale" not in results:
            if "scale_factor" in results:
                h, w = results["img"].shape[:2]
                sf = results["scale_factor"]
                sf = float(sf if np.isscalar(sf) else np.asarray(sf).reshape(-1)[0])
                results["scale"] = (int(w * sf), int(h * sf))
            else:
                self._random_scale(results)
        elif self.override:
            results.pop("scale")
            results.pop("scale_factor", None)
            self._random_scale(results)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        return results

    def _resize_img(self, results: dict[str, Any]) -> None:
        for key in results.get("img_fields", ["img"]):
            img = results[key]
            h, w = img.shape[:2]
            if self.keep_ratio:
                out = imrescale(img, results["scale"], interpolation="bilinear")
            else:
                out = imresize(img, results["scale"], interpolation="bilinear")
            new_h, new_w = out.shape[:2]
            results[key] = out
            results["img_shape"] = out.shape
            results["pad_shape"] = out.shape
            results["scale_factor"] = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
            results["keep_ratio"] = self.keep_ratio

    def _resize_bboxes(self, results: dict[str, Any]) -> None:
        for key in results.get("bbox_fields", []):
            sf = results["scale_factor"]
            boxes = Boxes(results[key]).scale(sf[0], sf[1])
            if self.bbox_clip_border:
                boxes = boxes.clip(results["img_shape"])
            results[key] = boxes.numpy().astype(np.float32)

    def _resize_masks(self, results: dict[str, Any]) -> None:
        for key in results.get("mask_fields", []):
            if results.get(key) is None:
                continue
            if self.keep_ratio:
                results[key] = results[key].rescale(results["scale"])
            else:
                results[key] = results[key].resize(results["img_shape"][:2])

    def _resize_seg(self, results: dict[str, Any]) -> None:
        for key in results.get("seg_fields", []):
            if self.keep_ratio:
                results[key] = imrescale(results[key], results["scale"], interpolation="nearest")
            else:
                results[key] = imresize(results[key], results["scale"], interpolation="nearest")

    def __repr__(self) -> str:
        return (
            f"Resize(img_scale={self.img_scale}, multiscale_mode={self.multiscale_mode!r}, "
            f"ratio_range={self.ratio_range}, keep_ratio={self.keep_ratio})"
        )


class RandomFlip:
    """Flip with probability ``flip_ratio`` in ``direction`` (``horizontal`` | ``vertical`` |
    ``diagonal``, or a list of them: then ``flip_ratio`` is either one total probability shared
    equally, or a list with one probability per direction).

    Adds ``flip`` (bool) and ``flip_direction``; when ``flip`` is already in the sample (set by
    ``MultiScaleFlipAug``) it is obeyed. Updates ``img`` and every field.
    """

    _DIRECTIONS = ("horizontal", "vertical", "diagonal")

    def __init__(
        self, flip_ratio: float | Sequence[float] | None = None, direction: str | Sequence[str] = "horizontal"
    ) -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        for d in directions:
            if d not in self._DIRECTIONS:
                raise ValueError(f"RandomFlip: direction must be one of {self._DIRECTIONS}, got {d!r}")
        ratios: list[float]
        if flip_ratio is None:
            ratios = [0.0] * len(directions)
        elif isinstance(flip_ratio, (list, tuple)):
            if len(flip_ratio) != len(directions):
                raise ValueError("RandomFlip: a list flip_ratio needs one entry per direction")
            ratios = [float(r) for r in flip_ratio]
        else:
            ratios = [float(flip_ratio) / len(directions)] * len(directions)
        if any(r < 0 for r in ratios) or sum(ratios) > 1 + 1e-9:
            raise ValueError(f"RandomFlip: flip ratios must be >= 0 and sum to <= 1, got {flip_ratio!r}")
        self.flip_ratio = flip_ratio
        self.direction = direction
        self._directions = directions
        self._probs = ratios + [max(0.0, 1.0 - sum(ratios))]

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        if "flip" not in results:
            k = int(np.random.choice(len(self._probs), p=np.asarray(self._probs) / sum(self._probs)))
            cur = self._directions[k] if k < len(self._directions) else None
            results["flip"] = cur is not None
            results["flip_direction"] = cur
        if "flip_direction" not in results or (results["flip"] and results["flip_direction"] is None):
            results["flip_direction"] = self._directions[0]
        if results["flip"]:
            d = results["flip_direction"]
            for key in results.get("img_fields", ["img"]):
                results[key] = imflip(results[key], d)
            for key in results.get("bbox_fields", []):
                results[key] = Boxes(results[key]).flip(results["img_shape"], d).numpy()
            for key in results.get("mask_fields", []):
                results[key] = results[key].flip(d)
            for key in results.get("seg_fields", []):
                results[key] = imflip(results[key], d)
        return results

    def __repr__(self) -> str:
        return f"RandomFlip(flip_ratio={self.flip_ratio}, direction={self.direction!r})"


class Pad:
    """Pad at the bottom/right to a fixed ``size = (h, w)``, to multiples of ``size_divisor``, or to a
    square. ``pad_val``: a number for the image, or a table ``{img = 0, masks = 0, seg = 255}``.

    Adds ``pad_shape``, ``pad_fixed_size``, ``pad_size_divisor``; updates ``img``, mask and seg fields
    (boxes do not move).
    """

    def __init__(
        self,
        size: Sequence[int] | None = None,
        size_divisor: int | None = None,
        pad_to_square: bool = False,
        pad_val: float | dict[str, float] | None = None,
    ) -> None:
        if pad_to_square:
            if size is not None or size_divisor is not None:
                raise ValueError("Pad: pad_to_square excludes size and size_divisor")
        elif (size is None) == (size_divisor is None):
            raise ValueError("Pad: give exactly one of size and size_divisor (or pad_to_square)")
        self.size = tuple(int(v) for v in size) if size is not None else None
        self.size_divisor = size_divisor
        self.pad_to_square = pad_to_square
        vals = {"img": 0, "masks": 0, "seg": 255}
        if isinstance(pad_val, dict):
            vals.update(pad_val)
        elif pad_val is not None:
            vals["img"] = pad_val
        self.pad_val = vals

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        size = self.size
        for key in results.get("img_fields", ["img"]):
            img = results[key]
            if self.pad_to_square:
                m = max(img.shape[:2])
                size = (m, m)
            if size is not None:
                padded = impad(img, size, self.pad_val["img"])
            else:
                padded = impad_to_multiple(img, self.size_divisor, self.pad_val["img"])
            results[key] = padded
        results["pad_shape"] = results["img"].shape
        results["pad_fixed_size"] = size
        results["pad_size_divisor"] = self.size_divisor
        pad_hw = results["pad_shape"][:2]
        for key in results.get("mask_fields", []):
            results[key] = results[key].pad(pad_hw, pad_val=self.pad_val["masks"])
        for key in results.get("seg_fields", []):
            results[key] = impad(results[key], pad_hw, self.pad_val["seg"])
        return results

    def __repr__(self) -> str:
        return f"Pad(size={self.size}, size_divisor={self.size_divisor}, pad_to_square={self.pad_to_square})"


_LABEL_OF = {"gt_bboxes": "gt_labels", "gt_bboxes_ignore": "gt_labels_ignore"}
_MASK_OF = {"gt_bboxes": "gt_masks", "gt_bboxes_ignore": "gt_masks_ignore"}


class RandomCrop:
    """Random crop of ``crop_size = (h, w)``.

    ``crop_type``: ``absolute`` (pixels, limited by the image), ``absolute_range`` (``[min, max]``
    edge in pixels), ``relative`` (fractions of h and w), ``relative_range`` (fractions sampled in
    ``[crop_size, 1]``). Boxes are shifted, clipped (``bbox_clip_border``) and those left empty are
    dropped with their labels and masks. When no ``gt_bboxes`` survive the sample is dropped (``None``)
    unless ``allow_negative_crop``. ``recompute_bbox`` recomputes boxes from the cropped masks.
    """

    def __init__(
        self,
        crop_size: Sequence[float],
        crop_type: str = "absolute",
        allow_negative_crop: bool = False,
        recompute_bbox: bool = False,
        bbox_clip_border: bool = True,
    ) -> None:
        if crop_type not in ("absolute", "absolute_range", "relative", "relative_range"):
            raise ValueError(f"RandomCrop: invalid crop_type {crop_type!r}")
        if crop_type in ("absolute", "absolute_range"):
            if crop_size[0] <= 0 or crop_size[1] <= 0:
                raise ValueError(f"RandomCrop: crop_size must be positive, got {crop_size}")
        elif not (0 < crop_size[0] <= 1 and 0 < crop_size[1] <= 1):
            raise ValueError(f"RandomCrop: relative crop_size must be in (0, 1], got {crop_size}")
        self.crop_size = tuple(crop_size)
        self.crop_type = crop_type
        self.allow_negative_crop = allow_negative_crop
        self.recompute_bbox = recompute_bbox
        self.bbox_clip_border = bbox_clip_border

    def _get_crop_size(self, h: int, w: int) -> tuple[int, int]:
        cs = self.crop_size
        if self.crop_type == "absolute":
            return min(int(cs[0]), h), min(int(cs[1]), w)
        if self.crop_type == "absolute_range":
            lo, hi = int(cs[0]), int(cs[1])
            return (
                int(np.random.randint(min(h, lo), min(h, hi) + 1)),
                int(np.random.randint(min(w, lo), min(w, hi) + 1)),
            )
        if self.crop_type == "relative":
            return int(h * cs[0] + 0.5), int(w * cs[1] + 0.5)
        ch, cw = np.asarray(cs, dtype=np.float64) + np.random.rand(2) * (1 - np.asarray(cs, dtype=np.float64))
        return int(h * ch + 0.5), int(w * cw + 0.5)

    def __call__(self, results: dict[str, Any]) -> dict[str, Any] | None:
        h, w = results["img"].shape[:2]
        ch, cw = self._get_crop_size(h, w)
        off_h = int(np.random.randint(0, max(h - ch, 0) + 1))
        off_w = int(np.random.randint(0, max(w - cw, 0) + 1))
        y1, y2, x1, x2 = off_h, off_h + ch, off_w, off_w + cw
        for key in results.get("img_fields", ["img"]):
            results[key] = np.ascontiguousarray(results[key][y1:y2, x1:x2])
        results["img_shape"] = results["img"].shape
        new_h, new_w = results["img_shape"][:2]
        for key in results.get("bbox_fields", []):
            boxes = Boxes(results[key]).translate(-off_w, -off_h)
            if self.bbox_clip_border:
                boxes = boxes.clip((new_h, new_w))
            valid = boxes.nonempty().numpy()
            if key == "gt_bboxes" and not valid.any() and not self.allow_negative_crop:
                return None
            results[key] = boxes.numpy()[valid]
            if _LABEL_OF.get(key) in results:
                results[_LABEL_OF[key]] = results[_LABEL_OF[key]][valid]
            mkey = _MASK_OF.get(key)
            if mkey in results:
                results[mkey] = results[mkey][np.nonzero(valid)[0]].crop(np.asarray([x1, y1, x2, y2]))
                if self.recompute_bbox:
                    results[key] = results[mkey].get_bboxes()
        for key in results.get("seg_fields", []):
            results[key] = np.ascontiguousarray(results[key][y1:y2, x1:x2])
        return results

    def __repr__(self) -> str:
        return f"RandomCrop(crop_size={self.crop_size}, crop_type={self.crop_type!r})"


class SegRescale:
    """Rescale every seg field by ``scale_factor`` (nearest), e.g. 1/8 for HTC's semantic head."""

    def __init__(self, scale_factor: float = 1) -> None:
        self.scale_factor = scale_factor

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        if self.scale_factor != 1:
            for key in results.get("seg_fields", []):
                results[key] = imrescale(results[key], self.scale_factor, interpolation="nearest")
        return results

    def __repr__(self) -> str:
        return f"SegRescale(scale_factor={self.scale_factor})"


class Expand:
    """Zoom out (SSD): with probability ``prob`` place the image at a random position of a canvas
    ``ratio`` times larger (``ratio`` uniform in ``ratio_range``) filled with ``mean`` (given in RGB
    when ``to_rgb``, as the Normalize config). Boxes and masks move with the image."""

    def __init__(
        self,
        mean: Sequence[float] = (0, 0, 0),
        to_rgb: bool = True,
        ratio_range: Sequence[float] = (1, 4),
        seg_ignore_label: int | None = None,
        prob: float = 0.5,
    ) -> None:
        self.mean = tuple(mean)[::-1] if to_rgb else tuple(mean)
        self.to_rgb = to_rgb
        self.ratio_range = tuple(ratio_range)
        self.seg_ignore_label = seg_ignore_label
        self.prob = prob

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        if np.random.uniform(0, 1) > self.prob:
            return results
        img = results["img"]
        h, w, c = img.shape
        ratio = np.random.uniform(*self.ratio_range)
        eh, ew = int(h * ratio), int(w * ratio)
        canvas = np.full((eh, ew, c), self.mean, dtype=img.dtype)
        left = int(np.random.uniform(0, w * ratio - w))
        top = int(np.random.uniform(0, h * ratio - h))
        canvas[top : top + h, left : left + w] = img
        results["img"] = canvas
        results["img_shape"] = canvas.shape
        for key in results.get("bbox_fields", []):
            results[key] = Boxes(results[key]).translate(left, top).numpy()
        for key in results.get("mask_fields", []):
            results[key] = results[key].expand(eh, ew, top, left)
        for key in results.get("seg_fields", []):
            seg = results[key]
            fill = self.seg_ignore_label if self.seg_ignore_label is not None else 0
            out = np.full((eh, ew), fill, dtype=seg.dtype)
            out[top : top + h, left : left + w] = seg
            results[key] = out
        return results

    def __repr__(self) -> str:
        return f"Expand(mean={self.mean}, ratio_range={self.ratio_range}, prob={self.prob})"


class MinIoURandomCrop:
    """SSD's crop: pick a minimum IoU from ``(1 = no crop, *min_ious, 0)``, then try up to 50 patches
    (sides >= ``min_crop_size`` of the image, aspect 0.5..2) whose IoU with every box is at least it;
    keep boxes whose centre lies in the patch (clipped to it when ``bbox_clip_border``)."""

    def __init__(
        self,
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size: float = 0.3,
        bbox_clip_border: bool = True,
    ) -> None:
        self.min_ious = tuple(min_ious)
        self.sample_mode = (1, *self.min_ious, 0)
        self.min_crop_size = min_crop_size
        self.bbox_clip_border = bbox_clip_border

    @staticmethod
    def _centres_in(boxes: np.ndarray, patch: np.ndarray) -> np.ndarray:
        c = Boxes(boxes).centers.numpy()
        return (c[:, 0] > patch[0]) & (c[:, 1] > patch[1]) & (c[:, 0] < patch[2]) & (c[:, 1] < patch[3])

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        img = results["img"]
        fields = results.get("bbox_fields", [])
        boxes = np.concatenate([results[k] for k in fields], 0) if fields else np.zeros((0, 4), np.float32)
        h, w = img.shape[:2]
        while True:
            mode = self.sample_mode[np.random.randint(len(self.sample_mode))]
            if mode == 1:
                return results
            for _ in range(50):
                new_w = np.random.uniform(self.min_crop_size * w, w)
                new_h = np.random.uniform(self.min_crop_size * h, h)
                if new_h / new_w < 0.5 or new_h / new_w > 2:
                    continue
                left = np.random.uniform(w - new_w)
                top = np.random.uniform(h - new_h)
                patch = np.array((int(left), int(top), int(left + new_w), int(top + new_h)))
                if patch[2] == patch[0] or patch[3] == patch[1]:
                    continue
                patch_box = Boxes(patch.reshape(-1, 4).astype(np.float32))
                overlaps = patch_box.iou(Boxes(boxes)).numpy().reshape(-1)
                if len(overlaps) > 0 and overlaps.min() < mode:
                    continue
                if len(overlaps) > 0 and not self._centres_in(boxes, patch).any():
                    continue
                for key in fields:
                    b = results[key].copy()
                    keep = self._centres_in(b, patch)
                    b = b[keep]
                    if self.bbox_clip_border:
                        b[:, 2:] = b[:, 2:].clip(max=patch[2:])
                        b[:, :2] = b[:, :2].clip(min=patch[:2])
                    b -= np.tile(patch[:2], 2).astype(b.dtype)
                    results[key] = b
                    if _LABEL_OF.get(key) in results:
                        results[_LABEL_OF[key]] = results[_LABEL_OF[key]][keep]
                    mkey = _MASK_OF.get(key)
                    if mkey in results:
                        results[mkey] = results[mkey][np.nonzero(keep)[0]].crop(patch)
                results["img"] = np.ascontiguousarray(img[patch[1] : patch[3], patch[0] : patch[2]])
                results["img_shape"] = results["img"].shape
                for key in results.get("seg_fields", []):
                    results[key] = np.ascontiguousarray(
                        results[key][patch[1] : patch[3], patch[0] : patch[2]]
                    )
                return results

    def __repr__(self) -> str:
        return f"MinIoURandomCrop(min_ious={self.min_ious}, min_crop_size={self.min_crop_size})"
