"""Necks shared by several families (FPN-like necks live in their plugins)."""

from detcore.models.necks.ct_resnet_neck import CTResNetNeck, fill_bilinear_deconv_

__all__ = ["CTResNetNeck", "fill_bilinear_deconv_"]
