"""``AnchorFreeHead``: the shared base of per-point dense heads (FCOS, FoveaBox, RepPoints-like heads).

Structure (attribute names follow the reference 2.x checkpoints):

- ``cls_convs`` / ``reg_convs``: ``stacked_convs`` 3x3 :class:`ConvModule` towers (the last of each
  tower is a modulated deformable conv when ``dcn_on_last_conv``); ``conv_bias = "auto"`` gives the
  tower convs a bias only without ``norm_cfg``;
- ``conv_cls`` ``(feat_channels -> cls_out_channels)`` and ``conv_reg`` ``(feat_channels -> 4)``, 3x3;
- ``prior_generator``: a :class:`MlvlPointGenerator` over ``strides`` with offset 0.5, i.e. the point
  of feature cell ``(i, j)`` of a level with stride ``s`` is ``(j * s + s // 2, i * s + s // 2)`` for
  the even strides every standard config uses (the 2.x FCOS ``_get_points_single``).

Subclasses implement :meth:`loss_by_feat` and :meth:`get_targets`; prediction goes through
``BaseDenseHead.predict_by_feat`` with the points as priors and ``bbox_coder`` (distances to boxes).
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from detcore.models.dense_heads.base_dense_head import BaseDenseHead
from detcore.models.layers import ConvModule
from detcore.models.task_utils.prior_generators import MlvlPointGenerator
from detcore.models.utils import multi_apply
from detcore.registry import build
from detcore.settings import Key, Settings, checked

_FOCAL = {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0}
_DEFAULT_INIT = {
    "type": "Normal",
    "layer": "Conv2d",
    "std": 0.01,
    "override": {"type": "Normal", "name": "conv_cls", "std": 0.01, "bias_prob": 0.01},
}


class Scale(nn.Module):
    """A learnable scalar multiplier (``scale``, a 0-d parameter), one per feature level of a head."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AnchorFreeHead(BaseDenseHead, metaclass=ABCMeta):
    """Base of anchor-free dense heads: two conv towers, a classifier and a distance regressor.

    Args:
        num_classes: foreground classes (background excluded).
        in_channels: channels of every input feature map.
        feat_channels: channels of the tower convs.
        stacked_convs: convs per tower.
        strides: the stride of each input level (``(8, 16, 32, 64, 128)`` for P3-P7).
        dcn_on_last_conv: make the last tower conv a DCNv2 (``conv_cfg = {type = "DCNv2"}``).
        conv_bias: bias of the tower convs: ``"auto"`` (iff no norm) or a bool.
        loss_cls / loss_bbox: loss tables (kind ``loss``); ``loss_cls.use_sigmoid`` picks sigmoid
            (``cls_out_channels = num_classes``) or softmax (``num_classes + 1``) scores.
        bbox_coder: the point/distance coder table (kind ``task_util``).
        conv_cfg / norm_cfg: layer tables of the tower convs (e.g. ``{type = "GN", num_groups = 32}``).
        train_cfg / test_cfg: the detector's settings (test: ``nms_pre``, ``score_thr``, ``nms``,
            ``max_per_img``).
        init_cfg: weight init (default: N(0, 0.01) convs, ``conv_cls`` bias at prior 0.01).

    Inputs are the neck's maps ``[(B, in_channels, H_l, W_l)]``; :meth:`forward` returns per-level
    ``cls_scores (B, cls_out_channels, H_l, W_l)`` and ``bbox_preds (B, 4, H_l, W_l)``.
    """

    #: point heads assign by location, not by an assigner; the reference's configs keep these keys
    train_settings = Settings(
        assigner=Key(kind="task_util", doc="accepted for the reference's configs; unused"),
        allowed_border=Key(int, -1, doc="accepted for the reference's configs; unused"),
        pos_weight=Key(float, -1.0, doc="accepted for the reference's configs; unused"),
        debug=Key(bool, False, doc="accepted for the reference's configs; unused"),
    )

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        dcn_on_last_conv: bool = False,
        conv_bias: bool | str = "auto",
        loss_cls: Mapping[str, Any] | None = None,
        loss_bbox: Mapping[str, Any] | None = None,
        bbox_coder: Mapping[str, Any] | None = None,
        conv_cfg: Mapping[str, Any] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        init_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = _DEFAULT_INIT,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
        if not (conv_bias == "auto" or isinstance(conv_bias, bool)):
            raise ValueError(f"{name}: conv_bias must be 'auto' or a bool, got {conv_bias!r}")
        if stacked_convs < 0:
            raise ValueError(f"{name}: stacked_convs must be >= 0, got {stacked_convs}")
        if loss_cls is None:
            loss_cls = dict(_FOCAL)
        if loss_bbox is None:
            loss_bbox = {"type": "IoULoss", "loss_weight": 1.0}
        if bbox_coder is None:
            bbox_coder = {"type": "DistancePointBBoxCoder"}
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = list(strides)
        self.dcn_on_last_conv = dcn_on_last_conv
        self.conv_bias = conv_bias
        self.conv_cfg = dict(conv_cfg) if conv_cfg is not None else None
        self.norm_cfg = dict(norm_cfg) if norm_cfg is not None else None
        self.train_cfg = checked(self, "train_cfg", train_cfg, where=name)
        self.test_cfg = checked(self, "test_cfg", test_cfg, where=name)
        self.loss_cls = build("loss", loss_cls, where=f"{name}.loss_cls")
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", False))
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1
        self.loss_bbox = build("loss", loss_bbox, where=f"{name}.loss_bbox")
        self.bbox_coder = build("task_util", bbox_coder, where=f"{name}.bbox_coder")
        self.prior_generator = MlvlPointGenerator(self.strides)
        # a point is one prior per location, as an anchor head with one anchor per location
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        self._init_layers()

    # -- layers ------------------------------------------------------------------------------------

    def _init_layers(self) -> None:
        """Towers, then the predictors."""
        self.cls_convs = self._make_tower()
        self.reg_convs = self._make_tower()
        self._init_predictor()

    def _make_tower(self) -> nn.ModuleList:
        tower = nn.ModuleList()
        for i in range(self.stacked_convs):
            chn = self.in_channels if i == 0 else self.feat_channels
            if self.dcn_on_last_conv and i == self.stacked_convs - 1:
                conv_cfg: dict | None = {"type": "DCNv2"}
            else:
                conv_cfg = self.conv_cfg
            tower.append(
                ConvModule(chn, self.feat_channels, 3, stride=1, padding=1, conv_cfg=conv_cfg,
                           norm_cfg=self.norm_cfg, bias=self.conv_bias)
            )
        return tower

    # kept under the reference's names for subclasses that rebuild one tower
    def _init_cls_convs(self) -> None:
        self.cls_convs = self._make_tower()

    def _init_reg_convs(self) -> None:
        self.reg_convs = self._make_tower()

    def _init_predictor(self) -> None:
        chn = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        self.conv_cls = nn.Conv2d(chn, self.cls_out_channels, 3, padding=1)
        self.conv_reg = nn.Conv2d(chn, 4, 3, padding=1)

    # -- checkpoints -------------------------------------------------------------------------------

    _OLD_PREDICTOR_SUFFIXES = (("cls", "conv_cls"), ("reg", "conv_reg"), ("centerness", "conv_centerness"))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,  # noqa: ANN001
                              unexpected_keys, error_msgs) -> None:
        """Accept early checkpoints whose predictors had method-specific names (``fcos_cls``,
        ``fcos_reg``, ``fcos_centerness``): a top-level child name that this head does not have and
        that ends in ``cls``/``reg``/``centerness`` becomes ``conv_cls``/``conv_reg``/``conv_centerness``."""
        children = dict(self.named_children())
        for key in [k for k in state_dict if k.startswith(prefix)]:
            head, _, rest = key[len(prefix):].partition(".")
            if not rest or head in children:
                continue
            for suffix, new in self._OLD_PREDICTOR_SUFFIXES:
                if head.endswith(suffix) and new in children and f"{prefix}{new}.{rest}" not in state_dict:
                    state_dict[f"{prefix}{new}.{rest}"] = state_dict.pop(key)
                    break
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # -- forward -----------------------------------------------------------------------------------

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
        """Per-level ``(cls_scores, bbox_preds)`` for the feature maps ``feats``."""
        return multi_apply(self.forward_single, feats)[:2]

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One level ``(B, C, H, W)`` -> ``cls_score, bbox_pred, cls_feat, reg_feat`` (features after
        the towers, for subclasses that add branches such as centerness)."""
        cls_feat = x
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        cls_score = self.conv_cls(cls_feat)
        reg_feat = x
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        bbox_pred = self.conv_reg(reg_feat)
        return cls_score, bbox_pred, cls_feat, reg_feat

    # -- training (subclasses) ---------------------------------------------------------------------

    @abstractmethod
    def loss_by_feat(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Losses from the outputs of :meth:`forward` and the batch's ground truth."""

    @abstractmethod
    def get_targets(self, points: list[torch.Tensor], gt_bboxes_list: list[torch.Tensor],
                    gt_labels_list: list[torch.Tensor]) -> Any:
        """Training targets of every point of every level, for a batch of images."""

    # -- points (the 2.x interface, kept for subclasses and checks) --------------------------------

    def _get_points_single(self, featmap_size: Sequence[int], stride: int, dtype: torch.dtype,
                           device: Any, flatten: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer cell coordinates ``(y, x)`` of one level, each ``(H, W)`` (``(H * W,)`` if ``flatten``).

        Subclasses turn them into image points (FCOS: ``x * stride + stride // 2``). New code uses
        ``self.prior_generator.grid_priors``.
        """
        h, w = featmap_size
        x_range = torch.arange(w, device=device).to(dtype)
        y_range = torch.arange(h, device=device).to(dtype)
        y, x = torch.meshgrid(y_range, x_range, indexing="ij")
        if flatten:
            y, x = y.flatten(), x.flatten()
        return y, x

    def get_points(self, featmap_sizes: Sequence[Sequence[int]], dtype: torch.dtype, device: Any,
                   flatten: bool = False) -> list[Any]:
        """``_get_points_single`` for every level (deprecated: use ``prior_generator.grid_priors``)."""
        warnings.warn(
            f"{type(self).__name__}.get_points is deprecated; use prior_generator.grid_priors",
            DeprecationWarning, stacklevel=2,
        )
        return [
            self._get_points_single(size, self.strides[i], dtype, device, flatten)
            for i, size in enumerate(featmap_sizes)
        ]
