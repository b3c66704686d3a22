"""``FCNMaskHead``: the Mask R-CNN mask branch (convs -> 2x upsample -> per-class mask logits).

The base of every mask head (HTC's and Mask Scoring R-CNN's extend it). Module names follow the
reference checkpoints: ``convs.N.conv``, ``upsample``, ``conv_logits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.dense_heads.base_dense_head import scale_factor_tensor
from detcore.models.init import BaseModule, ModuleList
from detcore.models.layers.conv import build_conv_layer
from detcore.models.layers.conv_module import ConvModule
from detcore.models.layers.upsample import build_upsample_layer
from detcore.models.roi_heads.mask_heads.paste import paste_masks_in_image
from detcore.models.roi_heads.mask_target import mask_target
from detcore.registry import build
from detcore.settings import REQUIRED, Key, Settings
from detcore.structures.instances import Instances

_UPSAMPLE_METHODS = (None, "deconv", "nearest", "bilinear")


class FCNMaskHead(BaseModule):
    """A small FCN on RoI features that predicts one ``M x M`` mask per class.

    Args:
        num_convs: 3x3 ConvModules (``conv_kernel_size``) before the upsampling.
        roi_feat_size: side of the pooled RoI features (14).
        in_channels, conv_out_channels: channels of the input and of the convs.
        num_classes: mask channels (1 with ``class_agnostic``).
        upsample_cfg: ``{type = "deconv" | "nearest" | "bilinear", scale_factor = 2}`` or ``{type = ""}``
            / ``None`` for none. ``deconv``: a ``ConvTranspose2d`` (kernel = stride = scale factor)
            followed by ReLU.
        conv_cfg, norm_cfg: layer tables of the convs (``norm_cfg = {type = "GN", num_groups = 32}``
            for the gn-all configs).
        predictor_cfg: conv table of ``conv_logits`` (1x1).
        loss_mask: loss table (``CrossEntropyLoss`` with ``use_mask = true``).

    Input ``(N, in_channels, roi_feat_size, roi_feat_size)``; output logits
    ``(N, num_classes or 1, M, M)`` with ``M = roi_feat_size * scale_factor`` (28).
    """

    #: the RoI head's ``train_cfg`` keys that the mask targets read
    train_settings = Settings(
        mask_size=Key((int, list), REQUIRED, doc="side (or (h, w)) of the mask targets, e.g. 28"),
        soft_mask_target=Key(bool, False, doc="keep resized bitmap targets soft (float)"),
    )
    #: the RoI head's ``test_cfg`` keys that the mask pasting reads
    test_settings = Settings(mask_thr_binary=Key(float, REQUIRED, doc="binarise pasted masks at; < 0: soft"))

    def __init__(
        self,
        num_convs: int = 4,
        roi_feat_size: int = 14,
        in_channels: int = 256,
        conv_kernel_size: int = 3,
        conv_out_channels: int = 256,
        num_classes: int = 80,
        class_agnostic: bool = False,
        upsample_cfg: Mapping[str, Any] | None = {"type": "deconv", "scale_factor": 2},  # noqa: B006
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        predictor_cfg: Mapping[str, Any] = {"type": "Conv"},  # noqa: B006 - read only
        loss_mask: Mapping[str, Any] = {"type": "CrossEntropyLoss", "use_mask": True, "loss_weight": 1.0},  # noqa: B006
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        upsample_cfg = dict(upsample_cfg) if upsample_cfg else {"type": None}
        method = upsample_cfg.pop("type", None) or None
        if method not in _UPSAMPLE_METHODS:
            raise ValueError(
                f"FCNMaskHead: upsample_cfg.type {method!r} is not supported; use deconv, nearest, bilinear "
                "or none"
            )
        scale_factor = upsample_cfg.pop("scale_factor", None)
        if method is not None and scale_factor is None:
            raise ValueError(f"FCNMaskHead: upsample_cfg of type {method!r} needs a scale_factor")
        if conv_kernel_size % 2 != 1:
            raise ValueError(f"FCNMaskHead: conv_kernel_size must be odd, got {conv_kernel_size}")
        self.num_convs = num_convs
        self.roi_feat_size = roi_feat_size
        self.in_channels = in_channels
        self.conv_kernel_size = conv_kernel_size
        self.conv_out_channels = conv_out_channels
        self.num_classes = num_classes
        self.class_agnostic = class_agnostic
        self.upsample_method = method
        self.scale_factor = scale_factor
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg

        padding = (conv_kernel_size - 1) // 2
        self.convs = ModuleList(
            [
                ConvModule(
                    in_channels if i == 0 else conv_out_channels,
                    conv_out_channels,
                    conv_kernel_size,
                    padding=padding,
                    conv_cfg=dict(conv_cfg) if conv_cfg is not None else None,
                    norm_cfg=dict(norm_cfg) if norm_cfg is not None else None,
                )
                for i in range(num_convs)
            ]
        )
        upsample_in = conv_out_channels if num_convs > 0 else in_channels
        if method is None:
            self.upsample = None
        elif method == "deconv":
            self.upsample = build_upsample_layer(
                {"type": "deconv", **upsample_cfg},
                in_channels=upsample_in,
                out_channels=conv_out_channels,
                kernel_size=scale_factor,
                stride=scale_factor,
            )
        else:
            align_corners = None if method == "nearest" else False
            self.upsample = build_upsample_layer(
                {"type": method, **upsample_cfg}, scale_factor=scale_factor, align_corners=align_corners
            )
        logits_in = conv_out_channels if method == "deconv" else upsample_in
        self.conv_logits = build_conv_layer(
            dict(predictor_cfg), logits_in, 1 if class_agnostic else num_classes, 1
        )
        self.relu = nn.ReLU(inplace=True)
        self.loss_mask = build("loss", loss_mask, where="mask_head.loss_mask")

    def init_weights(self) -> None:
        """The convs initialise themselves; ``upsample`` and ``conv_logits``: kaiming normal (fan_out,
        relu), bias 0 (as the reference)."""
        super().init_weights()
        for m in (self.upsample, self.conv_logits):
            if (
                m is not None
                and getattr(m, "weight", None) is not None
                and getattr(m, "bias", None) is not None
            ):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)

    @property
    def mask_size(self) -> int:
        """Side of the predicted masks."""
        return self.roi_feat_size * (self.scale_factor or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` RoI features -> ``(N, num_classes or 1, M, M)`` mask logits."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FCNMaskHead: expected RoI features (N, {self.in_channels}, S, S), got {tuple(x.shape)}"
            )
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == "deconv":
                x = self.relu(x)
        return self.conv_logits(x)

    # -- training ----------------------------------------------------------------------------------

    def get_targets(
        self,
        sampling_results: Sequence[Any],
        gt_instances: Sequence[Instances],
        rcnn_train_cfg: Mapping[str, Any],
    ) -> torch.Tensor:
        """``(P, M, M)`` float targets of all positives of the batch, image by image (the order of
        ``torch.cat([res.pos_bboxes for res in sampling_results])``)."""
        for i, gt in enumerate(gt_instances):
            if not gt.has("masks"):
                raise KeyError(
                    f"FCNMaskHead: gt_instances[{i}] has no 'masks' (load them with LoadAnnotations "
                    "with_mask = true)"
                )
        return mask_target(
            [res.pos_bboxes for res in sampling_results],
            [res.pos_assigned_gt_inds for res in sampling_results],
            [gt.masks for gt in gt_instances],
            rcnn_train_cfg,
        )

    def loss_and_target(
        self,
        mask_preds: torch.Tensor,
        sampling_results: Sequence[Any],
        gt_instances: Sequence[Instances],
        rcnn_train_cfg: Mapping[str, Any],
    ) -> dict[str, torch.Tensor]:
        """Mask loss of the positive RoIs.

        ``mask_preds`` ``(P, C, M, M)``: logits of the positives (in ``sampling_results`` order).
        Binary cross entropy of each positive's ground-truth class channel (the only channel when
        class agnostic) against its target, averaged over all pixels of all positives.
        Returns ``{"loss_mask": Tensor, "mask_targets": Tensor[P, M, M]}``.
        """
        mask_targets = self.get_targets(sampling_results, gt_instances, rcnn_train_cfg)
        if mask_preds.size(0) != mask_targets.size(0):
            raise ValueError(
                f"FCNMaskHead: {mask_preds.size(0)} mask predictions for {mask_targets.size(0)} positive RoIs"
            )
        if mask_preds.size(0) == 0:
            loss_mask = mask_preds.sum() * 0
        else:
            pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
            if self.class_agnostic:
                pos_labels = torch.zeros_like(pos_labels)
            loss_mask = self.loss_mask(mask_preds, mask_targets, pos_labels)
        return {"loss_mask": loss_mask, "mask_targets": mask_targets}

    # -- inference ---------------------------------------------------------------------------------

    def predict_by_feat(
        self,
        mask_preds: Sequence[torch.Tensor],
        results_list: list[Instances],
        img_metas: Sequence[Mapping[str, Any]],
        rcnn_test_cfg: Mapping[str, Any],
        rescale: bool = False,
        activate_map: bool = False,
    ) -> list[Instances]:
        """Add ``masks`` to each image's detections.

        Args:
            mask_preds: per image ``(N_i, C, M, M)`` logits (probabilities with ``activate_map``) at the
                detections' boxes.
            results_list: per image ``Instances`` with ``bboxes`` in input-image coordinates and ``labels``.
            rcnn_test_cfg: ``mask_thr_binary`` (0.5).
            rescale: boxes are divided by ``scale_factor`` (they are replaced by the rescaled boxes) and
                masks pasted into the original image (``ori_shape``); otherwise into the resized image.

        Returns:
            ``results_list`` with ``masks`` ``bool (N_i, H, W)``.
        """
        if not (len(mask_preds) == len(results_list) == len(img_metas)):
            raise ValueError(
                f"FCNMaskHead.predict_by_feat: {len(mask_preds)} mask predictions, {len(results_list)} "
                f"results and {len(img_metas)} image metas"
            )
        if "mask_thr_binary" not in rcnn_test_cfg:
            raise KeyError("FCNMaskHead: test_cfg.rcnn.mask_thr_binary is required (e.g. 0.5)")
        threshold = float(rcnn_test_cfg["mask_thr_binary"])
        for i, (preds, results, meta) in enumerate(zip(mask_preds, results_list, img_metas)):
            if preds.shape[0] != len(results):
                raise ValueError(
                    f"FCNMaskHead: image {i}: {preds.shape[0]} masks for {len(results)} detections"
                )
            masks, bboxes = self._predict_by_feat_single(
                preds, results.bboxes, results.labels, meta, threshold, rescale, activate_map
            )
            results.bboxes = bboxes
            results.masks = masks
        return results_list

    def _predict_by_feat_single(
        self,
        mask_preds: torch.Tensor,
        bboxes: torch.Tensor,
        labels: torch.Tensor,
        img_meta: Mapping[str, Any],
        threshold: float,
        rescale: bool,
        activate_map: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pasted masks ``(N, H, W)`` and the boxes they were pasted at (rescaled with ``rescale``)."""
        scale_factor = scale_factor_tensor(img_meta["scale_factor"], bboxes)
        img_h, img_w = (int(v) for v in img_meta["ori_shape"][:2])
        if rescale:
            bboxes = bboxes / scale_factor
        else:
            # the resized image: the original size times the scale factor, rounded (the reference)
            img_h = int(round(img_h * float(scale_factor[1])))
            img_w = int(round(img_w * float(scale_factor[0])))
        probs = mask_preds if activate_map else mask_preds.sigmoid()
        if not self.class_agnostic and probs.shape[0] > 0:
            probs = probs[torch.arange(probs.shape[0], device=probs.device), labels.long()]
        else:
            probs = probs[:, 0]
        return paste_masks_in_image(probs, bboxes, img_h, img_w, threshold), bboxes


__all__ = ["FCNMaskHead"]
