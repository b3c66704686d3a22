"""``HybridTaskCascade``: Cascade (Mask) R-CNN's detector with an HTC RoI head (Chen et al., 2019). The RoI
head names the extra batch entry it trains on (``gt_semantic_seg`` with the semantic branch)."""

from __future__ import annotations

from det_plugin_cascade.cascade_rcnn import CascadeRCNN


class HybridTaskCascade(CascadeRCNN):
    """A :class:`CascadeRCNN` whose ``roi_head`` is a :class:`HybridTaskCascadeRoIHead`. Losses:
    ``loss_rpn_*``, ``s{i}.*`` per stage and ``loss_semantic_seg`` with the semantic branch (the batch
    then carries ``gt_semantic_seg``); eval outputs ``bboxes``, ``scores``, ``labels``, ``masks``."""

    @property
    def with_semantic(self) -> bool:
        return bool(getattr(self.roi_head, "with_semantic", False))
