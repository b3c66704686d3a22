"""Dense heads shared by several families: the base and the anchor-based head."""

from detcore.models.dense_heads.anchor_head import AnchorHead, AnchorTargets
from detcore.models.dense_heads.base_dense_head import BaseDenseHead, unpack_gt_instances

__all__ = ["AnchorHead", "AnchorTargets", "BaseDenseHead", "unpack_gt_instances"]
