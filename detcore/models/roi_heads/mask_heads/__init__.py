"""Mask heads of the RoI heads and mask pasting."""

from detcore.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead
from detcore.models.roi_heads.mask_heads.paste import paste_masks_in_image

__all__ = ["FCNMaskHead", "paste_masks_in_image"]
