"""IoU calculators used by assigners (configurable by ``iou_calculator`` tables)."""

from __future__ import annotations

import torch  # noqa: F401  (type hints)


class BboxOverlaps2D:
    """Pairwise (or aligned) IoU / IoF / GIoU of xyxy boxes; a 5th column (score) is ignored.

    ``scale`` and ``dtype="fp16"`` compute in half precision on scaled boxes to save memory on CUDA (as
    the reference offers; IoU does not depend on the scale); results are float32.
    """

    def __init__(self, scale: float = 1.0, dtype: str | None = None) -> None:
        if dtype not in (None, "fp16"):
            raise ValueError(f"BboxOverlaps2D: dtype must be None or 'fp16', got {dtype!r}")
        self.scale, self.dtype = scale, dtype

    def __call__(
        self, bboxes1: torch.Tensor, bboxes2: torch.Tensor, mode: str = "iou", is_aligned: bool = False
    ) -> torch.Tensor:
        """``(..., M, 4|5)`` x ``(..., N, 4|5)`` -> ``(..., M, N)`` (``(..., M)`` if aligned)."""
        from detcore.ops import box_overlaps

        for name, b in (("bboxes1", bboxes1), ("bboxes2", bboxes2)):
            if b.size(-1) not in (0, 4, 5):
                raise ValueError(
                    f"BboxOverlaps2D: {name} last dim must be 4 or 5, got shape {tuple(b.shape)}"
                )
        bboxes1, bboxes2 = bboxes1[..., :4], bboxes2[..., :4]
        if self.dtype == "fp16" and bboxes1.is_cuda:
            b1 = (bboxes1 / self.scale).half()
            b2 = (bboxes2 / self.scale).half()
            return box_overlaps(b1, b2, mode=mode, aligned=is_aligned).float()
        return box_overlaps(bboxes1, bboxes2, mode=mode, aligned=is_aligned)

    def __repr__(self) -> str:
        return f"BboxOverlaps2D(scale={self.scale}, dtype={self.dtype})"
