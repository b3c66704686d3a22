"""``ShapesDataset``: generate (or reuse) the synthetic shapes data, then read it as COCO."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from detcore.data.datasets.coco import CocoDataset
from detcore.data.shapes import CATEGORIES, generate_shapes


class ShapesDataset(CocoDataset):
    """The shapes dataset of :mod:`detcore.data.shapes`, split ``"train"`` or ``"val"``.

    ``num_images`` sets the size of this split (default: 300 train / 100 val); the other arguments
    are passed to :func:`generate_shapes` (``root=None`` uses the cache under
    ``default_shapes_root()``). Everything else behaves exactly as :class:`CocoDataset` on the
    written files; ``seg_prefix`` points at the semantic maps (0 background, 1 + label).
    """

    CLASSES = CATEGORIES

    def __init__(
        self,
        split: str = "train",
        root: str | None = None,
        num_images: int | None = None,
        seed: int = 0,
        pipeline: Sequence[Mapping[str, Any] | Any] | None = None,
        image_size: Sequence[int] = (320, 320),
        max_objects: int = 4,
        classes: Sequence[str] | None = None,
        test_mode: bool = False,
        filter_empty_gt: bool = True,
        strict: bool = False,
        num_train: int = 300,
        num_val: int = 100,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"ShapesDataset: split must be 'train' or 'val', got {split!r}")
        if num_images is not None:
            num_train, num_val = (num_images, num_val) if split == "train" else (num_train, num_images)
        paths = generate_shapes(
            root,
            num_train=num_train,
            num_val=num_val,
            seed=seed,
            image_size=tuple(image_size),
            max_objects=max_objects,
        )
        self.paths = paths
        self.split = split
        super().__init__(
            paths[f"{split}_ann"],
            pipeline,
            img_prefix=paths[f"{split}_img"],
            classes=classes,
            test_mode=test_mode,
            filter_empty_gt=filter_empty_gt,
            strict=strict,
            seg_prefix=paths[f"{split}_seg"],
        )
