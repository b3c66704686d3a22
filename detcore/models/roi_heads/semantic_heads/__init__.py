"""Semantic segmentation heads that RoI heads fuse into their RoI features (HTC, SCNet)."""

from detcore.models.roi_heads.semantic_heads.fused_semantic_head import FusedSemanticHead

__all__ = ["FusedSemanticHead"]
