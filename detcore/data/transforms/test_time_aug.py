"""Test-time augmentation: run an inner pipeline once per (scale, flip) combination."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from detcore.data.transforms.compose import Compose
from detcore.data.transforms.geometric import _as_scales


class MultiScaleFlipAug:
    """Apply ``transforms`` (ending with ``PackDetInputs``) for every scale of ``img_scale`` (or every
    factor of ``scale_factor``) and, with ``flip``, also flipped in each of ``flip_direction``.

    The inner ``Resize`` and ``RandomFlip`` obey the ``scale``/``scale_factor`` and ``flip``/
    ``flip_direction`` this transform sets. Output: with a single combination (one scale, no flip) the
    normal packed sample, so the standard collate works; otherwise a list of packed samples, ordered
    scale-major then ``[no flip, flip direction 1, ...]``. ``collate`` turns a batch of such lists into
    ``imgs: list[Tensor]`` / ``img_metas: list[list[dict]]`` (one entry per augmentation); a detector's
    ``aug_test`` runs each augmentation, maps its boxes back to the original image with that
    augmentation's ``scale_factor`` and ``flip``/``flip_direction`` meta, and merges them (the
    reference: concatenate the boxes and scores of all augmentations, then NMS per class).
    """

    def __init__(
        self,
        transforms: Sequence[Mapping[str, Any]],
        img_scale: Any = None,
        scale_factor: float | Sequence[float] | None = None,
        flip: bool = False,
        flip_direction: str | Sequence[str] = "horizontal",
    ) -> None:
        self.transforms = Compose(transforms)
        if (img_scale is None) == (scale_factor is None):
            raise ValueError("MultiScaleFlipAug: give exactly one of img_scale and scale_factor")
        if img_scale is not None:
            self.scales: list[Any] = _as_scales(img_scale)
            self.scale_key = "scale"
        else:
            self.scales = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor]
            self.scale_key = "scale_factor"
        self.flip = flip
        self.flip_direction = [flip_direction] if isinstance(flip_direction, str) else list(flip_direction)

    def __call__(self, results: dict[str, Any]) -> Any:
        flips: list[tuple[bool, str | None]] = [(False, None)]
        if self.flip:
            flips += [(True, d) for d in self.flip_direction]
        outs = []
        for scale in self.scales:
            for flip, direction in flips:
                r = {k: (list(v) if isinstance(v, list) else v) for k, v in results.items()}
                r[self.scale_key] = scale
                r["flip"] = flip
                r["flip_direction"] = direction
                out = self.transforms(r)
                if out is None:
                    return None
                outs.append(out)
        return outs[0] if len(outs) == 1 else outs

    def __repr__(self) -> str:
        return (
            f"MultiScaleFlipAug(scales={self.scales}, flip={self.flip}, "
            f"flip_direction={self.flip_direction}, transforms={self.transforms!r})"
        )
