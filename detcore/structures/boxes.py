"""``Boxes``: axis-aligned boxes as an ``(N, 4)`` float tensor of ``(x1, y1, x2, y2)`` pixels.

The one home of box maths: areas, clipping to an image, dropping empty boxes, scaling, flipping,
translating, concatenating, pairwise IoU (through :func:`detcore.ops.box_overlaps`) and the
``xyxy <-> cxcywh`` conversions. Widths are ``x2 - x1`` (no ``+ 1``). Every method returns new boxes
(the input tensor is not modified); a NumPy array given to the constructor is shared, not copied,
so ``Boxes(array).flip(...).numpy()`` computes in the array's dtype.

The functions below the class (:func:`xyxy_to_cxcywh`, :func:`cxcywh_to_xyxy`, :func:`clip_boxes`,
:func:`scale_factor_tensor`) work on raw ``(..., 4)`` tensors for code that handles batched or
class-specific ``(N, 4k)`` boxes (the coders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FLIP_DIRECTIONS = ("horizontal", "vertical", "diagonal")


class Boxes:
    """``N`` boxes ``(x1, y1, x2, y2)`` in a float tensor :attr:`tensor` ``(N, 4)``.

    Args:
        tensor: ``(N, 4)`` boxes (tensor, NumPy array or nested sequence; an empty input is ``(0, 4)``).
            Integer input and nested sequences become float32; a float tensor or array keeps its dtype
            (and device).
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray | Sequence[Sequence[float]]) -> None:
        if isinstance(tensor, torch.Tensor):
            t = tensor
        elif isinstance(tensor, np.ndarray):
            t = torch.from_numpy(tensor)
        else:
            t = torch.as_tensor(tensor, dtype=torch.float32)
        if not t.is_floating_point():
            t = t.float()
        if t.numel() == 0:
            t = t.reshape(0, 4)
        if t.dim() != 2 or t.size(-1) != 4:
            raise ValueError(f"Boxes: expected an (N, 4) xyxy tensor, got shape {tuple(t.shape)}")
        self.tensor = t

    # -- container ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.tensor.size(0)

    def __getitem__(self, index: Any) -> Boxes:
        """Select boxes: an int (one box), a slice, a bool mask or an index tensor."""
        if isinstance(index, int):
            return Boxes(self.tensor[index].view(1, 4))
        return Boxes(self.tensor[index])

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tensor.dtype

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        return Boxes(self.tensor.to(*args, **kwargs))

    def clone(self) -> Boxes:
        return Boxes(self.tensor.clone())

    def numpy(self) -> np.ndarray:
        """The boxes as an ``(N, 4)`` NumPy array (a view of a CPU tensor)."""
        return self.tensor.detach().cpu().numpy()

    @staticmethod
    def cat(boxes_list: Sequence[Boxes]) -> Boxes:
        """The boxes of several ``Boxes`` in one, in order."""
        if not boxes_list:
            raise ValueError("Boxes.cat: an empty list (no dtype or device to give the result)")
        for i, b in enumerate(boxes_list):
            if not isinstance(b, Boxes):
                raise TypeError(f"Boxes.cat: item {i} is a {type(b).__name__}, not Boxes")
        return Boxes(torch.cat([b.tensor for b in boxes_list], dim=0))

    # -- measures ----------------------------------------------------------------------------------

    @property
    def widths(self) -> torch.Tensor:
        """``x2 - x1`` ``(N,)``."""
        return self.tensor[:, 2] - self.tensor[:, 0]

    @property
    def heights(self) -> torch.Tensor:
        """``y2 - y1`` ``(N,)``."""
        return self.tensor[:, 3] - self.tensor[:, 1]

    @property
    def area(self) -> torch.Tensor:
        """``(x2 - x1) * (y2 - y1)`` ``(N,)`` (negative for inverted boxes)."""
        return self.widths * self.heights

    @property
    def centers(self) -> torch.Tensor:
        """``((x1 + x2) / 2, (y1 + y2) / 2)`` ``(N, 2)``."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) * 0.5

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Bool ``(N,)``: width and height both greater than ``threshold``."""
        return (self.widths > threshold) & (self.heights > threshold)

    def iou(self, other: Boxes, mode: str = "iou") -> torch.Tensor:
        """Pairwise overlaps ``(N, M)`` with ``other`` (``mode``: ``iou``, ``iof`` or ``giou``)."""
        from detcore.ops import box_overlaps

        return box_overlaps(self.tensor, other.tensor, mode=mode)

    # -- conversions -------------------------------------------------------------------------------

    @property
    def cxcywh(self) -> torch.Tensor:
        """The boxes as ``(cx, cy, w, h)`` ``(N, 4)``."""
        return xyxy_to_cxcywh(self.tensor)

    @classmethod
    def from_cxcywh(cls, cxcywh: torch.Tensor) -> Boxes:
        """Boxes from ``(cx, cy, w, h)`` ``(N, 4)``."""
        return cls(cxcywh_to_xyxy(torch.as_tensor(cxcywh)))

    # -- transforms --------------------------------------------------------------------------------

    def clip(self, img_shape: Sequence[int]) -> Boxes:
        """x clamped to ``[0, w]``, y to ``[0, h]``, for ``img_shape = (h, w, ...)``."""
        return Boxes(clip_boxes(self.tensor, img_shape))

    def scale(self, sx: float, sy: float) -> Boxes:
        """x multiplied by ``sx``, y by ``sy`` (boxes of an image resized by those factors)."""
        return Boxes(self.tensor * self.tensor.new_tensor([sx, sy, sx, sy]))

    def unscale(self, scale_factor: Any) -> Boxes:
        """The boxes divided by an ``img_meta['scale_factor']`` (a number, ``(w, h)`` or ``(w, h, w, h)``):
        back to the image before a resize."""
        return Boxes(self.tensor / scale_factor_tensor(scale_factor, self.tensor))

    def translate(self, dx: float, dy: float) -> Boxes:
        """The boxes moved by ``(dx, dy)`` pixels."""
        return Boxes(self.tensor + self.tensor.new_tensor([dx, dy, dx, dy]))

    def flip(self, img_shape: Sequence[int], direction: str = "horizontal") -> Boxes:
        """The boxes mirrored in an image of ``img_shape = (h, w, ...)``: ``x -> w - x`` (horizontal),
        ``y -> h - y`` (vertical) or both (diagonal)."""
        if direction not in FLIP_DIRECTIONS:
            raise ValueError(f"flip direction must be horizontal, vertical or diagonal, got {direction!r}")
        h, w = img_shape[0], img_shape[1]
        t = self.tensor
        out = t.clone()
        if direction in ("horizontal", "diagonal"):
            out[:, 0] = w - t[:, 2]
            out[:, 2] = w - t[:, 0]
        if direction in ("vertical", "diagonal"):
            out[:, 1] = h - t[:, 3]
            out[:, 3] = h - t[:, 1]
        return Boxes(out)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``: ``cx = (x1 + x2) * 0.5``, ``w = x2 - x1``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], dim=-1)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(cx, cy, w, h)`` -> ``(cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5], dim=-1)


def clip_boxes(boxes: torch.Tensor, max_shape: Any) -> torch.Tensor:
    """x clamped to ``[0, w]`` and y to ``[0, h]``, as a new tensor.

    ``boxes`` is ``(N, 4k)`` (any leading dims) with ``max_shape = (h, w, ...)``, or a batch
    ``(B, N, 4k)`` with one ``(h, w)`` per image (a list or a ``(B, 2)`` tensor).
    """
    if boxes.dim() == 3 and not (
        isinstance(max_shape, Sequence)
        and len(max_shape)
        and isinstance(max_shape[0], (int, float, np.integer, np.floating))
    ):
        shapes = torch.as_tensor(max_shape, dtype=boxes.dtype, device=boxes.device).view(-1, 2)[:, :2]
        if shapes.size(0) != boxes.size(0):
            raise ValueError(f"{shapes.size(0)} max_shapes for a batch of {boxes.size(0)}")
        hw = shapes.flip(-1).repeat(1, boxes.size(-1) // 2).unsqueeze(1)  # (B, 1, 4k): w, h, w, h ...
        return torch.where(boxes < 0, boxes.new_zeros(()), torch.min(boxes, hw))
    h, w = float(max_shape[0]), float(max_shape[1])
    out = boxes.clone()
    out[..., 0::2] = boxes[..., 0::2].clamp(min=0, max=w)
    out[..., 1::2] = boxes[..., 1::2].clamp(min=0, max=h)
    return out


def scale_factor_tensor(scale_factor: Any, like: torch.Tensor) -> torch.Tensor:
    """``img_meta['scale_factor']`` as a ``(4,)`` tensor ``(w, h, w, h)`` (a number or ``(w, h)`` widened)."""
    sf = torch.as_tensor(scale_factor, dtype=like.dtype, device=like.device).flatten()
    if sf.numel() == 1:
        sf = sf.repeat(4)
    elif sf.numel() == 2:
        sf = sf.repeat(2)
    elif sf.numel() != 4:
        raise ValueError(f"img_meta['scale_factor'] must have 1, 2 or 4 numbers, got {scale_factor!r}")
    return sf
