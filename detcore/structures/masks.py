"""Instance masks: :class:`BitmapMasks` (dense ``uint8 (N, H, W)``) and :class:`PolygonMasks`.

Both follow the reference's mask structures: every geometric transform of the data pipeline
(``rescale``, ``resize``, ``flip``, ``pad``, ``crop``, ``expand``) has a method here, so masks move
exactly as the image does. Polygons are stored per instance as a list of flat float arrays
``[x0, y0, x1, y1, ...]`` in pixel coordinates (COCO convention).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch

from detcore.data.image_io import imrescale, imresize, rescale_size


def _to_index(index: Any) -> Any:
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    return index


class BaseMasks:
    height: int
    width: int

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_masks={len(self)}, height={self.height}, width={self.width})"

    @classmethod
    def _cat_size(cls, masks: Sequence[BaseMasks]) -> tuple[int, int]:
        """The common (height, width) of masks to concatenate; all must be ``cls`` of one size."""
        name = cls.__name__
        if not masks:
            raise ValueError(f"{name}.cat needs at least one {name}")
        h, w = masks[0].height, masks[0].width
        for m in masks:
            if not isinstance(m, cls) or (m.height, m.width) != (h, w):
                raise ValueError(f"{name}.cat: all items must be {name} of the same height/width")
        return h, w


class BitmapMasks(BaseMasks):
    """Dense masks ``uint8 (N, H, W)`` with values 0/1."""

    def __init__(self, masks: np.ndarray | Sequence[np.ndarray], height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)
        if len(masks) == 0:
            self.masks = np.empty((0, self.height, self.width), dtype=np.uint8)
        else:
            arr = np.stack(masks) if isinstance(masks, (list, tuple)) else np.asarray(masks)
            if arr.ndim != 3 or arr.shape[1:] != (self.height, self.width):
                raise ValueError(
                    f"BitmapMasks: masks of shape {arr.shape} do not match (N, {self.height}, {self.width})"
                )
            self.masks = arr.astype(np.uint8, copy=False)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Any) -> BitmapMasks:
        index = _to_index(index)
        masks = self.masks[index]
        if masks.ndim == 2:
            masks = masks[None]
        return BitmapMasks(masks, self.height, self.width)

    def __iter__(self):
        return iter(self.masks)

    # -- geometry ----------------------------------------------------------------------------------

    def rescale(self, scale: float | tuple[int, int], interpolation: str = "nearest") -> BitmapMasks:
        """Rescale keeping the aspect ratio (``scale``: factor or ``(long, short)``)."""
        if len(self.masks) == 0:
            (new_w, new_h), _ = rescale_size((self.width, self.height), scale)
            return BitmapMasks(np.empty((0, new_h, new_w), np.uint8), new_h, new_w)
        out = np.stack([imrescale(m, scale, interpolation=interpolation) for m in self.masks])
        return BitmapMasks(out, out.shape[1], out.shape[2])

    def resize(self, out_shape: tuple[int, int], interpolation: str = "nearest") -> BitmapMasks:
        """Resize to ``out_shape = (h, w)``."""
        h, w = int(out_shape[0]), int(out_shape[1])
        if len(self.masks) == 0:
            return BitmapMasks(np.empty((0, h, w), np.uint8), h, w)
        out = np.stack([imresize(m, (w, h), interpolation=interpolation) for m in self.masks])
        return BitmapMasks(out, h, w)

    def flip(self, flip_direction: str = "horizontal") -> BitmapMasks:
        if len(self.masks) == 0:
            return BitmapMasks(self.masks.copy(), self.height, self.width)
        axes = {"horizontal": (2,), "vertical": (1,), "diagonal": (1, 2)}
        if flip_direction not in axes:
            raise ValueError(
                f"flip direction must be horizontal, vertical or diagonal, got {flip_direction!r}"
            )
        return BitmapMasks(
            np.ascontiguousarray(np.flip(self.masks, axis=axes[flip_direction])), self.height, self.width
        )

    def pad(self, out_shape: tuple[int, int], pad_val: int = 0) -> BitmapMasks:
        """Pad at the bottom/right to ``out_shape = (h, w)``."""
        h, w = int(out_shape[0]), int(out_shape[1])
        out = np.full((len(self.masks), h, w), pad_val, dtype=np.uint8)
        out[:, : self.height, : self.width] = self.masks
        return BitmapMasks(out, h, w)

    def crop(self, bbox: np.ndarray) -> BitmapMasks:
        """Crop to ``bbox = (x1, y1, x2, y2)`` (integer pixels, clipped to the mask)."""
        x1, y1, x2, y2 = _clip_crop_box(bbox, self.height, self.width)
        h, w = max(y2 - y1, 1), max(x2 - x1, 1)
        out = self.masks[:, y1 : y1 + h, x1 : x1 + w] if len(self.masks) else np.empty((0, h, w), np.uint8)
        return BitmapMasks(np.ascontiguousarray(out), h, w)

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> BitmapMasks:
        """Place the masks at ``(top, left)`` in a larger zero canvas."""
        out = np.zeros((len(self.masks), expanded_h, expanded_w), dtype=np.uint8)
        out[:, top : top + self.height, left : left + self.width] = self.masks
        return BitmapMasks(out, expanded_h, expanded_w)

    def crop_and_resize(
        self,
        bboxes: np.ndarray | torch.Tensor,
        out_shape: tuple[int, int],
        inds: np.ndarray | torch.Tensor,
        device: str | torch.device = "cpu",
        interpolation: str = "bilinear",
        binarize: bool = True,
    ) -> BitmapMasks:
        """Mask targets: for each ``bboxes[i]`` (xyxy, image pixels) crop mask ``inds[i]`` and resize it
        to ``out_shape`` with RoIAlign (``aligned=True``, as the reference). Binarised at 0.5."""
        from detcore.ops.roi_align import roi_align

        oh, ow = int(out_shape[0]), int(out_shape[1])
        if len(self.masks) == 0 or len(bboxes) == 0:
            return BitmapMasks(np.empty((0, oh, ow), np.uint8), oh, ow)
        bboxes_t = torch.as_tensor(bboxes, dtype=torch.float32, device=device).reshape(-1, 4)
        inds_t = torch.as_tensor(inds, device=device).long().reshape(-1)
        rois = torch.cat(
            [torch.arange(len(bboxes_t), device=device, dtype=torch.float32)[:, None], bboxes_t], 1
        )
        gt = torch.from_numpy(self.masks).to(device).index_select(0, inds_t).float()[:, None]
        targets = roi_align(gt, rois, (oh, ow), 1.0, 0, True).squeeze(1)
        if binarize:
            return BitmapMasks((targets >= 0.5).cpu().numpy().astype(np.uint8), oh, ow)
        soft = BitmapMasks(np.empty((0, oh, ow), np.uint8), oh, ow)
        soft.masks = targets.cpu().numpy()  # float values in [0, 1] (soft mask targets), not cast to uint8
        return soft

    # -- conversion --------------------------------------------------------------------------------

    @property
    def areas(self) -> np.ndarray:
        """Pixel count of each mask, ``float (N,)``."""
        return self.masks.sum((1, 2)).astype(np.float64)

    def to_ndarray(self) -> np.ndarray:
        return self.masks

    def to_tensor(self, dtype: torch.dtype = torch.uint8, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.tensor(self.masks, dtype=dtype, device=device)

    def get_bboxes(self) -> np.ndarray:
        """Tight boxes ``float32 (N, 4)`` xyxy around each mask (zeros for an empty mask)."""
        boxes = np.zeros((len(self.masks), 4), dtype=np.float32)
        for i, m in enumerate(self.masks):
            ys, xs = np.nonzero(m)
            if len(xs):
                boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        return boxes

    @classmethod
    def cat(cls, masks: Sequence[BitmapMasks]) -> BitmapMasks:
        """Concatenate masks of the same size."""
        h, w = cls._cat_size(masks)
        return cls(np.concatenate([m.masks for m in masks]), h, w)

    @classmethod
    def random(
        cls, num_masks: int = 3, height: int = 32, width: int = 32, seed: int | None = None
    ) -> BitmapMasks:
        rng = np.random.RandomState(seed)
        return cls((rng.rand(num_masks, height, width) > 0.5).astype(np.uint8), height, width)


class PolygonMasks(BaseMasks):
    """Polygon masks: ``masks[i]`` is a list of flat ``float`` arrays ``[x0, y0, x1, y1, ...]``."""

    def __init__(self, masks: Sequence[Sequence[np.ndarray]], height: int, width: int) -> None:
        if not isinstance(masks, (list, tuple)):
            raise TypeError(f"PolygonMasks: masks must be a list of lists of polygons, got {type(masks)}")
        self.masks = []
        for i, polys in enumerate(masks):
            if not isinstance(polys, (list, tuple)):
                raise TypeError(f"PolygonMasks: instance {i} must be a list of polygons, got {type(polys)}")
            self.masks.append([np.asarray(p, dtype=np.float64).reshape(-1) for p in polys])
        self.height, self.width = int(height), int(width)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Any) -> PolygonMasks:
        index = _to_index(index)
        if isinstance(index, (int, np.integer)):
            return PolygonMasks([self.masks[int(index)]], self.height, self.width)
        if isinstance(index, slice):
            return PolygonMasks(self.masks[index], self.height, self.width)
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.nonzero(index)[0]
        return PolygonMasks([self.masks[int(i)] for i in index.reshape(-1)], self.height, self.width)

    def __iter__(self):
        return iter(self.masks)

    def _map(self, fn, height: int, width: int) -> PolygonMasks:
        return PolygonMasks([[fn(p.copy()) for p in polys] for polys in self.masks], height, width)

    def rescale(self, scale: float | tuple[int, int], interpolation: Any = None) -> PolygonMasks:
        (new_w, new_h), _ = rescale_size((self.width, self.height), scale)
        return self.resize((new_h, new_w))

    def resize(self, out_shape: tuple[int, int], interpolation: Any = None) -> PolygonMasks:
        h, w = int(out_shape[0]), int(out_shape[1])
        sy, sx = h / self.height, w / self.width

        def fn(p: np.ndarray) -> np.ndarray:
            p[0::2] *= sx
            p[1::2] *= sy
            return p

        return self._map(fn, h, w)

    def flip(self, flip_direction: str = "horizontal") -> PolygonMasks:
        if flip_direction not in ("horizontal", "vertical", "diagonal"):
            raise ValueError(
                f"flip direction must be horizontal, vertical or diagonal, got {flip_direction!r}"
            )

        def fn(p: np.ndarray) -> np.ndarray:
            if flip_direction in ("horizontal", "diagonal"):
                p[0::2] = self.width - p[0::2]
            if flip_direction in ("vertical", "diagonal"):
                p[1::2] = self.height - p[1::2]
            return p

        return self._map(fn, self.height, self.width)

    def pad(self, out_shape: tuple[int, int], pad_val: int = 0) -> PolygonMasks:
        """Padding at the bottom/right leaves polygon coordinates unchanged."""
        return self._map(lambda p: p, int(out_shape[0]), int(out_shape[1]))

    def crop(self, bbox: np.ndarray) -> PolygonMasks:
        """Shift polygons into the crop ``(x1, y1, x2, y2)`` and clip them to it."""
        x1, y1, x2, y2 = _clip_crop_box(bbox, self.height, self.width)
        h, w = max(y2 - y1, 1), max(x2 - x1, 1)

        def fn(p: np.ndarray) -> np.ndarray:
            p[0::2] = np.clip(p[0::2] - x1, 0, w)
            p[1::2] = np.clip(p[1::2] - y1, 0, h)
            return p

        return self._map(fn, h, w)

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> PolygonMasks:
        def fn(p: np.ndarray) -> np.ndarray:
            p[0::2] += left
            p[1::2] += top
            return p

        return self._map(fn, expanded_h, expanded_w)

    def crop_and_resize(
        self,
        bboxes: np.ndarray | torch.Tensor,
        out_shape: tuple[int, int],
        inds: np.ndarray | torch.Tensor,
        device: str | torch.device = "cpu",
        interpolation: str = "bilinear",
        binarize: bool = True,
    ) -> BitmapMasks:
        """Mask targets from polygons: shift/scale each polygon into its box, then rasterise."""
        oh, ow = int(out_shape[0]), int(out_shape[1])
        bboxes = np.asarray(bboxes.detach().cpu() if isinstance(bboxes, torch.Tensor) else bboxes).reshape(
            -1, 4
        )
        inds = np.asarray(inds.detach().cpu() if isinstance(inds, torch.Tensor) else inds).reshape(-1)
        out = []
        for box, i in zip(bboxes, inds):
            x1, y1, x2, y2 = box.astype(np.float64)
            # a box narrower than one pixel scales as one pixel wide (the reference)
            sx, sy = ow / max(x2 - x1, 1.0), oh / max(y2 - y1, 1.0)
            polys = []
            for p in self.masks[int(i)]:
                q = p.copy()
                q[0::2] = (q[0::2] - x1) * sx
                q[1::2] = (q[1::2] - y1) * sy
                polys.append(q)
            out.append(polygons_to_bitmap(polys, oh, ow))
        arr = np.stack(out) if out else np.empty((0, oh, ow), np.uint8)
        return BitmapMasks(arr, oh, ow)

    @property
    def areas(self) -> np.ndarray:
        """Polygon areas by the shoelace formula (holes are not subtracted, as the reference)."""
        areas = []
        for polys in self.masks:
            a = 0.0
            for p in polys:
                x, y = p[0::2], p[1::2]
                a += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            areas.append(a)
        return np.asarray(areas, dtype=np.float64)

    def to_bitmap(self) -> BitmapMasks:
        return BitmapMasks(self.to_ndarray(), self.height, self.width)

    def to_ndarray(self) -> np.ndarray:
        """Rasterise to ``uint8 (N, H, W)``."""
        if not self.masks:
            return np.empty((0, self.height, self.width), dtype=np.uint8)
        return np.stack([polygons_to_bitmap(p, self.height, self.width) for p in self.masks])

    def to_tensor(self, dtype: torch.dtype = torch.uint8, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.tensor(self.to_ndarray(), dtype=dtype, device=device)

    def get_bboxes(self) -> np.ndarray:
        boxes = np.zeros((len(self.masks), 4), dtype=np.float32)
        for i, polys in enumerate(self.masks):
            if polys:
                xy = np.concatenate(polys).reshape(-1, 2)
                boxes[i] = [xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()]
        return boxes

    @classmethod
    def cat(cls, masks: Sequence[PolygonMasks]) -> PolygonMasks:
        h, w = cls._cat_size(masks)
        return cls([p for m in masks for p in m.masks], h, w)


def polygons_to_bitmap(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise one instance's polygons (COCO convention) into ``uint8 (height, width)``."""
    polys = [np.asarray(p, dtype=np.float64).tolist() for p in polygons if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=np.uint8)
    rles = mask_utils.frPyObjects(polys, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)


def _clip_crop_box(bbox: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    b = np.asarray(bbox).reshape(-1)
    if b.shape[0] != 4:
        raise ValueError(f"crop box must have 4 values (x1, y1, x2, y2), got {bbox!r}")
    x1, x2 = np.clip(b[[0, 2]], 0, width).astype(int)
    y1, y2 = np.clip(b[[1, 3]], 0, height).astype(int)
    return int(x1), int(y1), int(x2), int(y2)


__all__ = ["BaseMasks", "BitmapMasks", "PolygonMasks", "polygons_to_bitmap"]
