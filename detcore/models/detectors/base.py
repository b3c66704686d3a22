"""``BaseDetector``: the forward contract every detector follows.

``forward(imgs, img_metas, gt_instances=None, gt_ignored_instances=None, **extra)``

- train mode: a dict of named losses (tensors or lists of tensors; the engine sums every key that
  contains ``loss``);
- eval mode: a list of :class:`~detcore.structures.instances.Instances`, one per image, with
  ``bboxes`` ``(N, 4)`` xyxy in **original-image** pixels, ``scores`` ``(N,)`` and ``labels`` ``(N,)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.init import BaseModule, Sequential
from detcore.structures.instances import Instances


def build_neck(neck: Mapping[str, Any] | Sequence[Mapping[str, Any] | nn.Module] | nn.Module) -> nn.Module:
    """The detector's neck from one table (or module), or from a list of them chained in order (the
    reference's ``neck = [FPN, BFP]``: a ``Sequential`` whose state-dict keys are ``neck.0.*``,
    ``neck.1.*``; each neck takes the previous one's tuple of maps)."""
    from detcore.registry import build

    if isinstance(neck, Sequence) and not isinstance(neck, (str, bytes)):
        if not neck:
            raise ValueError("model.neck: an empty list (give one neck table, a list of them, or none)")
        return Sequential(*(build("neck", n, where=f"model.neck.{i}") for i, n in enumerate(neck)))
    return build("neck", neck, where="model.neck")


class BaseDetector(BaseModule):
    """Base class of detectors: dispatches ``forward`` to :meth:`loss` (train) or :meth:`predict` (eval)."""

    def __init__(self, init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> None:
        super().__init__(init_cfg)

    # -- parts ------------------------------------------------------------------------------------

    @property
    def with_neck(self) -> bool:
        return getattr(self, "neck", None) is not None

    @property
    def with_bbox(self) -> bool:
        return getattr(self, "bbox_head", None) is not None or getattr(self, "roi_head", None) is not None

    def extract_feat(self, imgs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (+ neck) features of a batch ``(B, 3, H, W)``: a tuple of ``(B, C, h_i, w_i)``."""
        raise NotImplementedError

    # -- the contract -----------------------------------------------------------------------------

    def loss(self, imgs: torch.Tensor, img_metas: list[dict], gt_instances: list[Instances],
             gt_ignored_instances: list[Instances] | None = None, **extra: Any) -> dict[str, Any]:
        """Losses of a batch: ``{name: Tensor | list[Tensor]}``."""
        raise NotImplementedError

    def predict(self, imgs: torch.Tensor, img_metas: list[dict], rescale: bool = True,
                **extra: Any) -> list[Instances]:
        """Detections: one ``Instances`` per image (original-image coordinates with ``rescale``).

        ``extra`` may hold ``proposals`` (per image ``Instances`` or ``(N_i, 4)`` boxes), which a
        detector with a RoI stage uses instead of its own; single-stage detectors ignore them."""
        raise NotImplementedError

    def aug_test(self, imgs: list[torch.Tensor], img_metas: list[list[dict]], rescale: bool = True,
                 **extra: Any) -> list[Instances]:
        """Test-time augmentation: ``imgs[k]`` ``(B, 3, H_k, W_k)`` and ``img_metas[k]`` (B dicts) per
        augmentation ``k``; one merged ``Instances`` per image."""
        raise NotImplementedError(f"{type(self).__name__} does not support test-time augmentation")

    def forward(self, imgs: torch.Tensor | list[torch.Tensor], img_metas: list[dict] | list[list[dict]],
                gt_instances: list[Instances] | None = None,
                gt_ignored_instances: list[Instances] | None = None, **extra: Any) -> Any:
        """Train mode: ``dict`` of losses; eval mode: ``list[Instances]`` (see the module docstring).

        In eval mode, lists of image batches and of meta lists (one per augmentation, as ``collate``
        gives for ``MultiScaleFlipAug`` with several combinations) go to :meth:`aug_test`.
        """
        if isinstance(imgs, (list, tuple)) and not self.training:
            if not isinstance(img_metas, (list, tuple)) or len(img_metas) != len(imgs):
                raise ValueError(
                    f"detector forward (test-time augmentation): {len(imgs)} image batches need as many "
                    f"img_metas lists"
                )
            for batch, metas in zip(imgs, img_metas):
                _check_batch(batch, metas)
            return self.aug_test(list(imgs), list(img_metas), **_predict_kwargs(extra))
        _check_batch(imgs, img_metas)
        if self.training:
            if gt_instances is None:
                raise ValueError(
                    f"{type(self).__name__}.forward: training mode needs 'gt_instances' (one Instances per "
                    "image); call model.eval() for inference"
                )
            if len(gt_instances) != imgs.shape[0]:
                raise ValueError(
                    f"{type(self).__name__}.forward: {len(gt_instances)} gt_instances for a batch of "
                    f"{imgs.shape[0]} images"
                )
            return self.loss(imgs, img_metas, gt_instances, gt_ignored_instances, **extra)
        return self.predict(imgs, img_metas, **_predict_kwargs(extra))


#: batch entries that reach ``predict`` (``proposals``: precomputed per-image boxes, for Fast R-CNN);
#: the others (e.g. gt_semantic_seg) serve training only
PREDICT_KEYS = ("rescale", "proposals")


def _predict_kwargs(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k in PREDICT_KEYS}


def _check_batch(imgs: Any, img_metas: Any) -> None:
    if not isinstance(imgs, torch.Tensor) or imgs.dim() != 4:
        shape = tuple(imgs.shape) if isinstance(imgs, torch.Tensor) else type(imgs).__name__
        raise ValueError(f"detector forward: 'imgs' must be a Tensor[B, 3, H, W], got {shape}")
    if not isinstance(img_metas, (list, tuple)) or len(img_metas) != imgs.shape[0]:
        n = len(img_metas) if isinstance(img_metas, (list, tuple)) else type(img_metas).__name__
        raise ValueError(f"detector forward: 'img_metas' must be a list of {imgs.shape[0]} dicts, got {n}")
