"""ResNet backbones (He et al., 2016) and the ResNet-D variant ResNetV1d (He et al., 2019).

The module tree, and so the state-dict keys, is that of the reference checkpoints and of torchvision's
ImageNet models: ``conv1``/``bn1`` (or ``stem.*`` with a deep stem), ``layer1`` ... ``layer4`` made of
blocks ``0``, ``1``, ... (see :mod:`det_plugin_resnet.blocks`).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from det_plugin_resnet.blocks import DEFAULT_NORM_CFG, STYLES, BasicBlock, Bottleneck
from det_plugin_resnet.res_layer import ResLayer
from detcore.models import BaseModule, build_conv_layer, build_norm_layer, constant_init

logger = logging.getLogger(__name__)

#: depth -> (block class, blocks per stage)
ARCH_SETTINGS: dict[int, tuple[type, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

#: keys of torchvision's ImageNet classifier, present in its checkpoints and dropped on load
CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


def _default_init_cfg() -> list[dict[str, Any]]:
    """Kaiming-normal (fan_out, relu) convolutions, batch/group norms weight 1 and bias 0."""
    return [
        {"type": "Kaiming", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": ["_BatchNorm", "GroupNorm"]},
    ]


class ResNet(BaseModule):
    """ResNet backbone: images (B, in_channels, H, W) -> tuple of feature maps, one per ``out_indices``.

    Stage ``i`` (0-based) has stride ``4 * prod(strides[:i + 1])`` relative to the input (4, 8, 16, 32 by
    default) and ``base_channels * 2**i * expansion`` channels (256, 512, 1024, 2048 for depth >= 50;
    64 ... 512 for depth 18/34); sizes round up (``ceil``) at every stride-2 step.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: image channels.
        stem_channels: stem output channels (default ``base_channels``).
        base_channels: ``planes`` of the first stage.
        num_stages: 1 to 4 stages.
        strides, dilations: per stage.
        out_indices: stages whose outputs are returned (0-based, increasing).
        style: ``"pytorch"`` (stride on the 3x3 conv) or ``"caffe"`` (stride on the first 1x1 conv).
        deep_stem: three 3x3 convs (``stem.*``) instead of one 7x7 conv.
        avg_down: projection shortcuts average-pool before a stride-1 1x1 conv.
        frozen_stages: stem and stages ``1..frozen_stages`` are frozen (eval mode, no gradients);
            -1 freezes nothing, 0 the stem only.
        conv_cfg, norm_cfg: layer tables for every conv / norm.
        norm_eval: keep every batch norm in eval mode (frozen statistics) while training.
        dcn: conv table (``{"type": "DCN", "deform_groups": 1}``) for the 3x3 conv of the stages with
            ``stage_with_dcn[i]``.
        plugins: blocks inserted into the bottlenecks: a list of ``{cfg = {type = "ContextBlock", ...},
            stages = [false, true, true, true], position = "after_conv3"}`` tables (``stages`` optional:
            all stages; ``position`` ``after_conv1`` / ``after_conv2`` / ``after_conv3``); see
            :meth:`make_stage_plugins`. Not for depth 18/34.
        with_cp: activation checkpointing in every block (saves memory, costs time).
        zero_init_residual: the last norm of each block starts at 0 (each block starts as identity);
            applies to the default initialisation only, not with ``pretrained``/``init_cfg``.
        pretrained: deprecated spelling of ``init_cfg = {type = "Pretrained", checkpoint = ...}``.
        init_cfg: weight initialisation table(s) (see :mod:`detcore.models.init`).
    """

    arch_settings = ARCH_SETTINGS

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: Optional[int] = None,
        base_channels: int = 64,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        out_indices: Sequence[int] = (0, 1, 2, 3),
        style: str = "pytorch",
        deep_stem: bool = False,
        avg_down: bool = False,
        frozen_stages: int = -1,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = DEFAULT_NORM_CFG,
        norm_eval: bool = True,
        dcn: Optional[Mapping[str, Any]] = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        plugins: Optional[Sequence[Mapping[str, Any]]] = None,
        with_cp: bool = False,
        zero_init_residual: bool = True,
        pretrained: Optional[str] = None,
        init_cfg: Optional[Any] = None,
    ) -> None:
        name = type(self).__name__
        if depth not in self.arch_settings:
            raise KeyError(f"{name}: invalid depth {depth}; valid depths: {sorted(self.arch_settings)}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"{name}: num_stages must be 1 to 4, got {num_stages}")
        strides, dilations = tuple(strides), tuple(dilations)
        if len(strides) != num_stages or len(dilations) != num_stages:
            raise ValueError(
                f"{name}: strides {strides} and dilations {dilations} need one entry per stage ({num_stages})"
            )
        out_indices = tuple(out_indices)
        if (
            not out_indices
            or list(out_indices) != sorted(set(out_indices))
            or not (0 <= out_indices[0] and out_indices[-1] < num_stages)
        ):
            raise ValueError(
                f"{name}: out_indices must be increasing stage indices in [0, {num_stages - 1}], "
                f"got {out_indices}"
            )
        if style not in STYLES:
            raise ValueError(f"{name}: style must be one of {STYLES}, got {style!r}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f"{name}: frozen_stages must be in [-1, {num_stages}], got {frozen_stages}")
        stage_with_dcn = tuple(stage_with_dcn)
        if dcn is not None and len(stage_with_dcn) != num_stages:
            raise ValueError(
                f"{name}: stage_with_dcn {stage_with_dcn} needs one entry per stage ({num_stages})"
            )
        plugins = list(plugins or ())
        for i, plugin in enumerate(plugins):
            if not isinstance(plugin, Mapping):
                raise TypeError(f"{name}: plugins[{i}] must be a table, got {plugin!r}")
            stages = plugin.get("stages")
            if stages is not None and len(stages) != num_stages:
                raise ValueError(
                    f"{name}: plugins[{i}].stages {list(stages)} needs one entry per stage ({num_stages})"
                )
        if plugins and self.arch_settings[depth][0] is BasicBlock:
            raise ValueError(f"{name}: 'plugins' need Bottleneck blocks (depth >= 50), got depth {depth}")
        if pretrained is not None and init_cfg is not None:
            raise ValueError(f"{name}: give either 'pretrained' (deprecated) or 'init_cfg', not both")
        if pretrained is not None and not isinstance(pretrained, str):
            raise TypeError(f"{name}: 'pretrained' must be a checkpoint path or URL, got {pretrained!r}")
        self._default_init = pretrained is None and init_cfg is None
        if pretrained is not None:
            logger.warning("%s: 'pretrained' is deprecated, use init_cfg = {type = 'Pretrained', ...}", name)
            init_cfg = {"type": "Pretrained", "checkpoint": pretrained}
        elif init_cfg is None:
            init_cfg = _default_init_cfg()
        super().__init__(init_cfg)

        block, stage_blocks = self.arch_settings[depth]
        self.block = block
        self.depth = depth
        self.stage_blocks = stage_blocks[:num_stages]
        self.stem_channels = base_channels if stem_channels is None else stem_channels
        self.base_channels = base_channels
        self.num_stages = num_stages
        self.strides, self.dilations, self.out_indices = strides, dilations, out_indices
        self.style, self.deep_stem, self.avg_down = style, deep_stem, avg_down
        self.frozen_stages = frozen_stages
        self.conv_cfg, self.norm_cfg = conv_cfg, dict(norm_cfg)
        self.norm_eval = norm_eval
        self.dcn, self.stage_with_dcn = dcn, stage_with_dcn
        self.plugins = plugins
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual

        self._make_stem(in_channels, self.stem_channels)

        inplanes = self.stem_channels
        self.res_layers: list[str] = []
        stage_channels: list[int] = []
        for i, num_blocks in enumerate(self.stage_blocks):
            planes = base_channels * 2**i
            layer = self.make_res_layer(
                block=block,
                inplanes=inplanes,
                planes=planes,
                num_blocks=num_blocks,
                stride=strides[i],
                dilation=dilations[i],
                style=style,
                avg_down=avg_down,
                with_cp=with_cp,
                conv_cfg=conv_cfg,
                norm_cfg=self.norm_cfg,
                dcn=dcn if dcn is not None and stage_with_dcn[i] else None,
                **({"plugins": self.make_stage_plugins(plugins, i)} if plugins else {}),
            )
            inplanes = planes * block.expansion
            stage_channels.append(inplanes)
            layer_name = f"layer{i + 1}"
            self.add_module(layer_name, layer)
            self.res_layers.append(layer_name)
        self.feat_dim = stage_channels[-1]
        #: channels of each returned feature map (the neck's ``in_channels``)
        self.out_channels: tuple[int, ...] = tuple(stage_channels[i] for i in out_indices)
        self._freeze_stages()

    # -- construction -------------------------------------------------------------------------------

    def make_res_layer(self, **kwargs: Any) -> ResLayer:
        """One stage; subclasses (ResNeXt) add block arguments here."""
        return ResLayer(**kwargs)

    def make_stage_plugins(
        self, plugins: Sequence[Mapping[str, Any]], stage_idx: int
    ) -> list[dict[str, Any]]:
        """The plugin tables of stage ``stage_idx`` (0-based): those whose ``stages[stage_idx]`` is true
        or that have no ``stages``, in list order, without the ``stages`` key. Every block of the stage
        gets them (``stages = [false, true, true, true]``: the blocks of C3-C5)."""
        chosen = []
        for plugin in plugins:
            plugin = dict(plugin)
            stages = plugin.pop("stages", None)
            if stages is None or stages[stage_idx]:
                chosen.append(plugin)
        return chosen

    def _make_stem(self, in_channels: int, stem_channels: int) -> None:
        if self.deep_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                build_conv_layer(self.conv_cfg, in_channels, half, 3, stride=2, padding=1, bias=False),
                build_norm_layer(self.norm_cfg, half)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(self.conv_cfg, half, half, 3, stride=1, padding=1, bias=False),
                build_norm_layer(self.norm_cfg, half)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(self.conv_cfg, half, stem_channels, 3, stride=1, padding=1, bias=False),
                build_norm_layer(self.norm_cfg, stem_channels)[1],
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = build_conv_layer(
                self.conv_cfg, in_channels, stem_channels, 7, stride=2, padding=3, bias=False
            )
            self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    # -- weights ------------------------------------------------------------------------------------

    def init_weights(self) -> None:
        """Apply ``init_cfg``; with the default initialisation also zero the last norm of every block
        (``zero_init_residual``) and the offset convs of deformable blocks (they start as plain convs),
        and give the plugin blocks back their own initialisation (a context block's zero last conv, an
        attention block's zero ``gamma``), which the Kaiming pass over every conv overwrote."""
        if self.is_init:
            return
        super().init_weights()
        if not self._default_init:
            return
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                if self.zero_init_residual:
                    constant_init(m.last_norm, 0)
                offset = getattr(m.conv2, "conv_offset", None)
                if offset is not None:
                    constant_init(offset, 0)
                for names in getattr(m, "plugin_names", {}).values():
                    for plugin_name in names:
                        block = getattr(m, plugin_name)
                        if hasattr(block, "init_weights"):
                            block.init_weights()

    def _load_from_state_dict(
        self,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,  # noqa: ANN001
        unexpected_keys,
        error_msgs,
    ) -> None:
        # torchvision's ImageNet checkpoints carry the classifier (fc.*), which a backbone has not
        for key in CLASSIFIER_KEYS:
            if state_dict.pop(prefix + key, None) is not None:
                logger.debug(
                    "%s: dropped the ImageNet classifier key '%s%s'", type(self).__name__, prefix, key
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # -- training state -----------------------------------------------------------------------------

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: list[nn.Module] = [self.stem] if self.deep_stem else [self.conv1, self.norm1]
        frozen += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ResNet:
        """Set train/eval mode, then keep frozen stages (and, with ``norm_eval``, all batch norms) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, in_channels, H, W) -> tuple of (B, out_channels[k], H / s_k, W / s_k), s_k = 4, 8, 16, 32."""
        if x.dim() != 4:
            raise ValueError(
                f"{type(self).__name__}: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}"
            )
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class ResNetV1d(ResNet):
    """ResNet-D: the 7x7 stem replaced by three 3x3 convs (``stem.*``) and average-pool shortcuts.

    Same arguments as :class:`ResNet`; ``deep_stem`` and ``avg_down`` are always on.
    """

    def __init__(self, **kwargs: Any) -> None:
        for key in ("deep_stem", "avg_down"):
            if key in kwargs and not kwargs[key]:
                raise ValueError(f"ResNetV1d: '{key}' is always true for ResNet-D; use ResNet to turn it off")
            kwargs.pop(key, None)
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
