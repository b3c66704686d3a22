"""``AnchorHead``: a dense head that classifies and regresses a fixed set of anchors per location.

Training follows the reference 2.x exactly:

1. anchors of every level from the prior generator, valid flags from each image's ``pad_shape``;
2. per image, the anchors inside the image (``allowed_border``) are assigned to the ground truth by
   ``train_cfg['assigner']`` and sampled by ``train_cfg['sampler']`` (``PseudoSampler`` when absent);
3. positives get the label of their box and regression targets ``bbox_coder.encode(anchor, gt)``;
   positives and sampled negatives get label weight 1 (``pos_weight`` for positives when > 0);
4. per level, ``loss_cls`` and ``loss_bbox`` averaged by ``avg_factor = num_total_pos``
   (``+ num_total_neg`` with a real sampler), each image counting at least one positive (and one
   negative).

Steps 1-3 and the ``avg_factor`` are :meth:`AnchorHead.loss_targets`, which ``loss_by_feat`` runs
before :meth:`AnchorHead.loss_from_targets` (step 4). Subclasses replace ``_init_layers`` and
``forward_single`` (RetinaHead) or ``loss_from_targets`` / ``loss_by_feat_single`` (SSDHead: per-level
anchor counts, no loss modules, hard negative mining over the levels of an image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from detcore.models.dense_heads.base_dense_head import BaseDenseHead, unpack_gt_instances
from detcore.models.task_utils.samplers import PseudoSampler
from detcore.models.utils import anchor_inside_flags, images_to_levels, multi_apply, unmap
from detcore.registry import build
from detcore.settings import REQUIRED, Key, Settings, checked
from detcore.structures.instances import Instances


class AnchorTargets(NamedTuple):
    """What :meth:`AnchorHead.loss_targets` gives ``loss_by_feat``: per image, per level the anchors
    ``(n_l, 4)``; per level ``(B, n_l[, 4])`` targets; the number the losses are averaged by."""

    anchor_list: list[list[torch.Tensor]]
    labels_list: list[torch.Tensor]
    label_weights_list: list[torch.Tensor]
    bbox_targets_list: list[torch.Tensor]
    bbox_weights_list: list[torch.Tensor]
    avg_factor: float


class AnchorHead(BaseDenseHead):
    """Anchor-based dense head with one 1x1 conv for classification and one for regression.

    Args:
        num_classes: number of object classes (background excluded).
        in_channels: channels of the input feature maps.
        feat_channels: channels of the hidden layers (used by subclasses).
        anchor_generator: prior generator table (kind ``task_util``).
        bbox_coder: box coder table (kind ``task_util``).
        reg_decoded_bbox: regress decoded boxes (for IoU-type losses) instead of deltas.
        loss_cls: classification loss table; ``use_sigmoid = true`` gives ``num_classes`` outputs per
            anchor, otherwise ``num_classes + 1`` (softmax, last = background). ``None``: no module
            (softmax outputs; the losses then skip it, or a subclass computes its own).
        loss_bbox: regression loss table, or ``None`` (no regression loss module).
        train_cfg: ``assigner``, ``sampler`` (optional), ``allowed_border`` (-1: all anchors) and
            ``pos_weight`` (<= 0: 1).
        test_cfg: ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img`` (see ``predict_by_feat``).
        init_cfg: weight-init table(s).
    """

    #: the ``train_cfg`` keys read by ``_init_assigner_sampler`` and ``_get_targets_single``
    train_settings = Settings(
        assigner=Key(kind="task_util", default=REQUIRED, doc="assigns anchors to the ground truth"),
        sampler=Key(kind="task_util", doc="samples assigned anchors (PseudoSampler; ignored when the "
                                          "classification loss handles_imbalance)"),
        allowed_border=Key(int, -1, doc="anchors this far outside the image still train; -1: all"),
        pos_weight=Key(float, -1.0, doc="label weight of positives; <= 0: 1"),
        debug=Key(bool, False, doc="accepted for the reference's configs; unused"),
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        anchor_generator: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "AnchorGenerator", "scales": [8, 16, 32], "ratios": [0.5, 1.0, 2.0],
            "strides": [4, 8, 16, 32, 64],
        },
        bbox_coder: Mapping[str, Any] = {  # noqa: B006 - read only
            "type": "DeltaXYWHBBoxCoder", "clip_border": True, "target_means": (0.0, 0.0, 0.0, 0.0),
            "target_stds": (1.0, 1.0, 1.0, 1.0),
        },
        reg_decoded_bbox: bool = False,
        loss_cls: Mapping[str, Any] | None = {  # noqa: B006 - read only
            "type": "CrossEntropyLoss", "use_sigmoid": True, "loss_weight": 1.0,
        },
        loss_bbox: Mapping[str, Any] | None = {  # noqa: B006 - read only
            "type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0,
        },
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = {  # noqa: B006 - read only
            "type": "Normal", "layer": "Conv2d", "std": 0.01,
        },
    ) -> None:
        super().__init__(init_cfg)
        if int(num_classes) <= 0:
            raise ValueError(f"{type(self).__name__}: num_classes must be > 0, got {num_classes}")
        self.num_classes = int(num_classes)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        name = type(self).__name__
        self.reg_decoded_bbox = reg_decoded_bbox
        self.bbox_coder = build("task_util", bbox_coder, where=f"{name}.bbox_coder")
        self.loss_cls = _build_optional("loss", loss_cls, f"{name}.loss_cls")
        self.loss_bbox = _build_optional("loss", loss_bbox, f"{name}.loss_bbox")
        # sigmoid class scores when the built loss says so; no loss module: softmax
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", False))
        self.cls_out_channels = self.num_classes if self.use_sigmoid_cls else self.num_classes + 1
        self.train_cfg = checked(self, "train_cfg", train_cfg, where=name)
        self.test_cfg = checked(self, "test_cfg", test_cfg, where=name)
        self.sampling = False
        if self.train_cfg:
            self._init_assigner_sampler()
        self.prior_generator = build("task_util", anchor_generator, where=f"{name}.anchor_generator")
        #: anchors per location of each level
        self.num_base_priors_per_level: list[int] = [int(n) for n in self.prior_generator.num_base_priors]
        counts = self.num_base_priors_per_level
        #: anchors per location: an int when every level has as many, else the per-level list
        self.num_base_priors: int | list[int] = counts[0] if len(set(counts)) == 1 else list(counts)
        self._init_layers()

    @property
    def num_anchors(self) -> int | list[int]:
        """Anchors per location (the reference's older name of ``num_base_priors``)."""
        return self.num_base_priors

    @property
    def anchor_generator(self) -> Any:
        return self.prior_generator

    def _handles_imbalance(self) -> bool:
        """Whether the classification loss balances positives and negatives itself (its class's
        ``handles_imbalance``, e.g. focal loss): a sampler in the config is then ignored (the
        reference's backwards-compatible rule). Heads that mine negatives themselves return True."""
        return bool(getattr(self.loss_cls, "handles_imbalance", False))

    def _init_assigner_sampler(self) -> None:
        where = f"{type(self).__name__}.train_cfg"
        if "assigner" not in self.train_cfg:
            raise ValueError(f"{where}: needs an 'assigner' table")
        self.assigner = build("task_util", self.train_cfg["assigner"], where=f"{where}.assigner")
        sampler = self.train_cfg.get("sampler")
        if sampler is None or self._handles_imbalance():
            sampler = {"type": "PseudoSampler"}
        self.sampler = build("task_util", sampler, where=f"{where}.sampler")
        self.sampling = not isinstance(self.sampler, PseudoSampler)

    # -- layers -----------------------------------------------------------------------------------

    def _init_layers(self) -> None:
        """``conv_cls`` and ``conv_reg``: 1x1 convs on the input features (shared by the levels)."""
        if not isinstance(self.num_base_priors, int):
            raise ValueError(
                f"{type(self).__name__}: predictors shared by the levels need one anchor count, the anchor "
                f"generator gives {self.num_base_priors} per level (build per-level convs in _init_layers)"
            )
        self.conv_cls = nn.Conv2d(self.in_channels, self.num_base_priors * self.cls_out_channels, 1)
        self.conv_reg = nn.Conv2d(self.in_channels, self.num_base_priors * 4, 1)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One level ``(B, C, h, w)`` -> cls ``(B, A * cls_out, h, w)``, bbox ``(B, A * 4, h, w)``."""
        return self.conv_cls(x), self.conv_reg(x)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-level outputs: ``(cls_scores, bbox_preds)``, each a list over levels."""
        return multi_apply(self.forward_single, feats)

    # -- anchors and targets ----------------------------------------------------------------------

    def get_anchors(
        self, featmap_sizes: Sequence[Sequence[int]], img_metas: Sequence[dict], device: Any = "cpu"
    ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Per image, per level: anchors ``(h * w * A, 4)`` and valid flags ``(h * w * A,)``."""
        multi_level_anchors = self.prior_generator.grid_priors(featmap_sizes, device=device)
        anchor_list = [multi_level_anchors for _ in img_metas]
        valid_flag_list = [
            self.prior_generator.valid_flags(featmap_sizes, _pad_shape(meta), device) for meta in img_metas
        ]
        return anchor_list, valid_flag_list

    def _get_targets_single(
        self,
        flat_anchors: torch.Tensor,
        valid_flags: torch.Tensor,
        gt_bboxes: torch.Tensor,
        gt_bboxes_ignore: torch.Tensor | None,
        gt_labels: torch.Tensor | None,
        img_meta: Mapping[str, Any],
        label_channels: int = 1,
        unmap_outputs: bool = True,
    ) -> tuple:
        """Targets of one image over all its anchors ``(N, 4)``.

        Returns ``(labels (N,), label_weights (N,), bbox_targets (N, 4), bbox_weights (N, 4), pos_inds,
        neg_inds, sampling_result)``; with ``unmap_outputs`` the first four cover every anchor (those
        outside the image get label ``num_classes`` and weight 0), otherwise only the inside ones.
        All ``None`` when no anchor is inside the image.
        """
        allowed_border = self.train_cfg.get("allowed_border", -1)
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, tuple(img_meta["img_shape"][:2]),
                                           allowed_border)
        if not inside_flags.any():
            return (None,) * 7
        anchors = flat_anchors[inside_flags, :]
        assign_result = self.assigner.assign(
            anchors, gt_bboxes, gt_bboxes_ignore, None if self.sampling else gt_labels
        )
        sampling_result = self.sampler.sample(assign_result, anchors, gt_bboxes)

        num_valid = anchors.shape[0]
        bbox_targets = torch.zeros_like(anchors)
        bbox_weights = torch.zeros_like(anchors)
        labels = anchors.new_full((num_valid,), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid, dtype=torch.float)

        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            if self.reg_decoded_bbox:
                pos_bbox_targets = sampling_result.pos_gt_bboxes
            else:
                pos_bbox_targets = self.bbox_coder.encode(
                    sampling_result.pos_bboxes, sampling_result.pos_gt_bboxes
                )
            bbox_targets[pos_inds, :] = pos_bbox_targets.to(bbox_targets.dtype)
            bbox_weights[pos_inds, :] = 1.0
            if gt_labels is None:  # RPN: a single foreground class
                labels[pos_inds] = 0
            else:
                labels[pos_inds] = gt_labels[sampling_result.pos_assigned_gt_inds]
            pos_weight = self.train_cfg.get("pos_weight", -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else float(pos_weight)
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        if unmap_outputs:
            num_total = flat_anchors.size(0)
            labels = unmap(labels, num_total, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total, inside_flags)
            bbox_targets = unmap(bbox_targets, num_total, inside_flags)
            bbox_weights = unmap(bbox_weights, num_total, inside_flags)
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds, sampling_result

    def get_targets(
        self,
        anchor_list: list[list[torch.Tensor]],
        valid_flag_list: list[list[torch.Tensor]],
        gt_bboxes_list: list[torch.Tensor],
        img_metas: Sequence[dict],
        gt_bboxes_ignore_list: list[torch.Tensor | None] | None = None,
        gt_labels_list: list[torch.Tensor] | None = None,
        label_channels: int = 1,
        unmap_outputs: bool = True,
        return_sampling_results: bool = False,
    ) -> tuple | None:
        """Targets of a batch, regrouped per level.

        Args:
            anchor_list / valid_flag_list: per image, per level (from :meth:`get_anchors`).
            gt_bboxes_list: per image ``(N_i, 4)``; gt_labels_list: per image ``(N_i,)`` (``None``: RPN).

        Returns:
            ``(labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_total_pos,
            num_total_neg)`` with each list per level holding ``(B, n_level[, 4])`` tensors, plus
            ``sampling_results_list`` when asked; ``None`` when an image has no anchor inside it.
        """
        num_imgs = len(img_metas)
        if not len(anchor_list) == len(valid_flag_list) == num_imgs:
            raise ValueError(
                f"get_targets: {len(anchor_list)} anchor lists and {len(valid_flag_list)} flag lists for "
                f"{num_imgs} images"
            )
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        concat_anchor_list = [torch.cat(anchors) for anchors in anchor_list]
        concat_valid_flag_list = [torch.cat(flags) for flags in valid_flag_list]
        if gt_bboxes_ignore_list is None:
            gt_bboxes_ignore_list = [None] * num_imgs
        if gt_labels_list is None:
            gt_labels_list = [None] * num_imgs
        results = multi_apply(
            self._get_targets_single, concat_anchor_list, concat_valid_flag_list, gt_bboxes_list,
            gt_bboxes_ignore_list, gt_labels_list, img_metas,
            label_channels=label_channels, unmap_outputs=unmap_outputs,
        )
        (all_labels, all_label_weights, all_bbox_targets, all_bbox_weights, pos_inds_list, neg_inds_list,
         sampling_results_list) = results[:7]
        rest_results = list(results[7:])  # subclasses may return more per-image targets
        if any(labels is None for labels in all_labels):
            return None
        num_total_pos = sum(max(inds.numel(), 1) for inds in pos_inds_list)
        num_total_neg = sum(max(inds.numel(), 1) for inds in neg_inds_list)
        res = (
            images_to_levels(all_labels, num_level_anchors),
            images_to_levels(all_label_weights, num_level_anchors),
            images_to_levels(all_bbox_targets, num_level_anchors),
            images_to_levels(all_bbox_weights, num_level_anchors),
            num_total_pos,
            num_total_neg,
        )
        if return_sampling_results:
            res = res + (sampling_results_list,)
        return res + tuple(images_to_levels(r, num_level_anchors) for r in rest_results)

    # -- losses -----------------------------------------------------------------------------------

    def loss_targets(
        self,
        cls_scores: Sequence[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> AnchorTargets:
        """The setup every anchor head's ``loss_by_feat`` starts with: feature sizes from ``cls_scores``
        (one ``(B, *, h_l, w_l)`` per level), the batch's anchors, their targets (see
        :meth:`get_targets`) and ``avg_factor`` (positives, plus negatives with a real sampler)."""
        name = type(self).__name__
        if self.train_cfg is None:
            raise ValueError(f"{name}: computing losses needs a train_cfg (assigner, ...)")
        gt_bboxes, gt_labels, gt_bboxes_ignore = unpack_gt_instances(gt_instances, gt_ignored_instances)
        featmap_sizes = [tuple(featmap.shape[-2:]) for featmap in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ValueError(
                f"{name}: {len(featmap_sizes)} feature levels but the anchor generator has "
                f"{self.prior_generator.num_levels}"
            )
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, img_metas, device=cls_scores[0].device)
        label_channels = self.cls_out_channels if self.use_sigmoid_cls else 1
        targets = self.get_targets(
            anchor_list, valid_flag_list, gt_bboxes, img_metas, gt_bboxes_ignore_list=gt_bboxes_ignore,
            gt_labels_list=gt_labels, label_channels=label_channels,
        )
        if targets is None:
            raise ValueError(
                f"{name}: an image of the batch has no anchor inside it "
                f"(img_shapes {[tuple(m['img_shape']) for m in img_metas]})"
            )
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, num_pos, num_neg = targets[:6]
        avg_factor = num_pos + num_neg if self.sampling else num_pos
        return AnchorTargets(anchor_list, labels_list, label_weights_list, bbox_targets_list,
                             bbox_weights_list, avg_factor)

    def loss_by_feat_single(
        self,
        cls_score: torch.Tensor,
        bbox_pred: torch.Tensor,
        anchors: torch.Tensor,
        labels: torch.Tensor,
        label_weights: torch.Tensor,
        bbox_targets: torch.Tensor,
        bbox_weights: torch.Tensor,
        avg_factor: float,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Losses of one level: ``cls_score`` ``(B, A * C, h, w)``, ``bbox_pred`` ``(B, A * 4, h, w)``,
        targets ``(B, h * w * A[, 4])``; both averaged by ``avg_factor`` (``None`` for an absent loss)."""
        loss_cls = loss_bbox = None
        if self.loss_cls is not None:
            labels = labels.reshape(-1)
            label_weights = label_weights.reshape(-1)
            cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
            loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor)
        if self.loss_bbox is not None:
            bbox_targets = bbox_targets.reshape(-1, 4)
            bbox_weights = bbox_weights.reshape(-1, 4)
            bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4)
            if self.reg_decoded_bbox:
                bbox_pred = self.bbox_coder.decode(anchors.reshape(-1, 4), bbox_pred)
            loss_bbox = self.loss_bbox(bbox_pred, bbox_targets, bbox_weights, avg_factor=avg_factor)
        return loss_cls, loss_bbox

    def loss_single(self, *args: Any, **kwargs: Any) -> tuple:
        """The reference 2.x name of :meth:`loss_by_feat_single` (``num_total_samples`` = ``avg_factor``)."""
        if "num_total_samples" in kwargs:
            kwargs["avg_factor"] = kwargs.pop("num_total_samples")
        return self.loss_by_feat_single(*args, **kwargs)

    def loss_by_feat(
        self,
        cls_scores: list[torch.Tensor],
        bbox_preds: list[torch.Tensor],
        gt_instances: Sequence[Instances],
        img_metas: Sequence[dict],
        gt_ignored_instances: Sequence[Instances] | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """``{"loss_cls": [per level], "loss_bbox": [per level]}`` for the head's outputs (a loss the
        head was built without is left out): :meth:`loss_targets`, then :meth:`loss_from_targets`."""
        targets = self.loss_targets(cls_scores, gt_instances, img_metas, gt_ignored_instances)
        return self.loss_from_targets(cls_scores, bbox_preds, targets)

    def loss_from_targets(
        self, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor], targets: AnchorTargets
    ) -> dict[str, list[torch.Tensor]]:
        """The losses of per-level outputs against :meth:`loss_targets`' result: by default
        :meth:`loss_by_feat_single` on each level; heads with another loss layout override this."""
        if self.loss_cls is None and self.loss_bbox is None:
            raise ValueError(
                f"{type(self).__name__}: no loss_cls and no loss_bbox; a head without loss modules "
                "implements loss_from_targets itself"
            )
        t = targets
        num_level_anchors = [anchors.size(0) for anchors in t.anchor_list[0]]
        all_anchor_list = images_to_levels([torch.cat(a) for a in t.anchor_list], num_level_anchors)
        losses_cls, losses_bbox = multi_apply(
            self.loss_by_feat_single, cls_scores, bbox_preds, all_anchor_list, t.labels_list,
            t.label_weights_list, t.bbox_targets_list, t.bbox_weights_list, avg_factor=t.avg_factor,
        )
        losses = {}
        if self.loss_cls is not None:
            losses["loss_cls"] = losses_cls
        if self.loss_bbox is not None:
            losses["loss_bbox"] = losses_bbox
        return losses


def _build_optional(kind: str, table: Mapping[str, Any] | Any | None, where: str) -> Any:
    return None if table is None else build(kind, table, where=where)


def _pad_shape(img_meta: Mapping[str, Any]) -> tuple[int, int]:
    """The padded size of one image (``pad_shape``; ``batch_input_shape`` or ``img_shape`` when absent)."""
    for key in ("pad_shape", "batch_input_shape", "img_shape"):
        if key in img_meta and img_meta[key] is not None:
            return tuple(img_meta[key][:2])
    raise KeyError(f"img_meta has no 'pad_shape' (keys: {sorted(img_meta)})")
