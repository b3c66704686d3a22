"""``HTCMaskHead``: the FCN mask head with HTC's mask information flow (Chen et al., Hybrid Task Cascade,
2019): a stage's head adds the previous stage's mask features (through the 1x1 ``conv_res``) to its
RoI features before its convs, and hands its own conv output on to the next stage."""

from __future__ import annotations

from typing import Any

import torch

from detcore.models.layers.conv_module import ConvModule
from detcore.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead


class HTCMaskHead(FCNMaskHead):
    """:class:`FCNMaskHead` with an optional residual input from the previous stage.

    Args:
        with_conv_res: build ``conv_res``, a 1x1 ConvModule ``conv_out_channels -> conv_out_channels``
            (with the head's ``conv_cfg`` / ``norm_cfg``) applied to the previous stage's mask features
            (the reference's stage 0 has none, stages 1 and 2 have one).
        **kwargs: the :class:`FCNMaskHead` arguments.

    ``conv_res`` is registered after ``conv_logits`` (checkpoint key ``conv_res.conv.weight``).
    """

    def __init__(self, with_conv_res: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.with_conv_res = with_conv_res
        if with_conv_res:
            self.conv_res = ConvModule(
                self.conv_out_channels,
                self.conv_out_channels,
                1,
                conv_cfg=dict(self.conv_cfg) if self.conv_cfg is not None else None,
                norm_cfg=dict(self.norm_cfg) if self.norm_cfg is not None else None,
            )

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        res_feat: torch.Tensor | None = None,
        return_logits: bool = True,
        return_feat: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """RoI features ``(N, C, S, S)`` (+ the previous stage's mask features ``(N, C', S, S)``) ->
        ``(logits (N, K, M, M), mask features (N, C', S, S))``, or only the one asked for.

        With ``res_feat``: ``x = x + conv_res(res_feat)``; the convs follow; their output is the mask
        feature handed to the next stage; logits = ``conv_logits(relu(upsample(feature)))`` (ReLU only
        after a deconv, as :class:`FCNMaskHead`).
        """
        name = type(self).__name__
        if not (return_logits or return_feat):
            raise ValueError(f"{name}: return_logits and return_feat are both false: nothing to return")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name}: expected RoI features (N, {self.in_channels}, S, S), got {tuple(x.shape)}"
            )
        if res_feat is not None:
            if not self.with_conv_res:
                raise ValueError(
                    f"{name}: got the previous stage's mask features but the head has no conv_res "
                    "(with_conv_res = false; the first stage of a mask information flow has none)"
                )
            x = x + self.conv_res(res_feat)
        for conv in self.convs:
            x = conv(x)
        feat = x
        if not return_logits:
            return feat
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == "deconv":
                x = self.relu(x)
        logits = self.conv_logits(x)
        return (logits, feat) if return_feat else logits


__all__ = ["HTCMaskHead"]
