"""HRNet (Sun et al., "Deep High-Resolution Representation Learning", CVPR 2019 / arXiv:1904.04514):
a high-resolution branch kept through the whole network, lower-resolution branches added stage by
stage, and repeated multi-resolution fusion between them. With an HRFPN neck this is HRNetV2p.

Structure (and state-dict keys, those of the reference checkpoints):

- stem: ``conv1`` (3x3, stride 2) ``bn1``, ``conv2`` (3x3, stride 2) ``bn2``, each followed by a ReLU:
  stride 4, ``stem_channels`` (64) channels;
- stage 1, ``layer1``: one branch of ``num_blocks[0]`` blocks (Bottleneck in HRNetV2), stride 4;
- ``transition1`` ... ``transition3``: for each branch of the next stage, ``None`` when the previous
  stage has that branch with the same channels, a 3x3 conv-norm-ReLU when only the channels change,
  and for a new branch a Sequential of stride-2 3x3 conv-norm-ReLU steps from the lowest-resolution
  map of the previous stage (``transitionK.i.0.{0,1}``);
- ``stage2`` ... ``stage4``: ``num_modules`` :class:`~det_plugin_hrnet.hr_module.HRModule` each, with
  2, 3, 4 branches in HRNetV2 (strides 4, 8, 16, 32).

The stages are described by the ``extra`` table, one sub-table per stage (``stage1`` ... ``stage4``)
with ``num_modules``, ``num_branches``, ``block`` (``"BASIC"`` or ``"BOTTLENECK"``), ``num_blocks`` and
``num_channels`` (one entry per branch); HRNetV2-W32:
``stage2.num_channels = [32, 64]``, ``stage3 = [32, 64, 128]``, ``stage4 = [32, 64, 128, 256]``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from det_plugin_resnet.blocks import BasicBlock, Bottleneck
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from det_plugin_hrnet.hr_module import HRModule, _conv_norm
from detcore.models import BaseModule, build_conv_layer, build_norm_layer, constant_init

logger = logging.getLogger(__name__)

#: the ``block`` names of the ``extra`` table
BLOCKS: dict[str, type] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}
STAGE_KEYS = ("num_modules", "num_branches", "block", "num_blocks", "num_channels")


def _default_init_cfg() -> list[dict[str, Any]]:
    """Kaiming-normal (fan_out, relu) convolutions, batch/group norms weight 1 and bias 0."""
    return [
        {"type": "Kaiming", "layer": "Conv2d"},
        {"type": "Constant", "val": 1, "layer": ["_BatchNorm", "GroupNorm"]},
    ]


def _check_extra(extra: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate the ``extra`` table: four stages with the five keys, one entry per branch, known blocks,
    stage 1 with one branch and every later stage adding one branch at most."""
    if not isinstance(extra, Mapping):
        raise TypeError(f"HRNet: 'extra' must be a table of stage1 ... stage4, got {extra!r}")
    stages = {}
    previous = 0
    for k in range(1, 5):
        where = f"HRNet: extra.stage{k}"
        cfg = extra.get(f"stage{k}")
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{where} is missing (HRNet needs the tables stage1 ... stage4)")
        missing = [key for key in STAGE_KEYS if key not in cfg]
        unknown = sorted(set(cfg) - set(STAGE_KEYS) - {"fuse_method"})
        if missing or unknown:
            raise ValueError(
                f"{where}: missing keys {missing}, unknown keys {unknown} (expected {STAGE_KEYS})"
            )
        if cfg.get("fuse_method", "SUM") != "SUM":
            raise ValueError(f"{where}.fuse_method: only 'SUM' exists, got {cfg['fuse_method']!r}")
        if cfg["block"] not in BLOCKS:
            raise ValueError(f"{where}.block must be one of {sorted(BLOCKS)}, got {cfg['block']!r}")
        n = int(cfg["num_branches"])
        for key in ("num_blocks", "num_channels"):
            if len(cfg[key]) != n:
                raise ValueError(
                    f"{where}.{key} needs one entry per branch (num_branches = {n}), got {list(cfg[key])}"
                )
        if int(cfg["num_modules"]) < 1:
            raise ValueError(f"{where}.num_modules must be >= 1, got {cfg['num_modules']}")
        if k == 1 and n != 1:
            raise ValueError(f"{where}.num_branches must be 1 (stage 1 is a single branch), got {n}")
        if k > 1 and not previous <= n <= previous + 1:
            raise ValueError(
                f"{where}.num_branches ({n}) must be the previous stage's ({previous}) or one more"
            )
        previous = n
        stages[f"stage{k}"] = {key: cfg[key] for key in STAGE_KEYS}
    return stages


class HRNet(BaseModule):
    """HRNet backbone: images (B, in_channels, H, W) -> one map per branch of the last stage.

    HRNetV2 returns 4 maps at strides 4, 8, 16, 32 with ``extra.stage4.num_channels * expansion``
    channels (32, 64, 128, 256 for W32); sizes round up at each stride-2 step. With
    ``multiscale_output = false`` only the stride-4 map is returned.

    Args:
        extra: the stage tables (see the module docstring).
        in_channels: image channels.
        stem_channels: channels of the two stem convs (64 in the reference; smaller for tiny models).
        conv_cfg, norm_cfg: layer tables of every conv / norm.
        norm_eval: keep every batch norm in eval mode (frozen statistics) while training.
        frozen_stages: -1 freezes nothing; 0 the stem; ``k >= 1`` also stage 1 (``layer1``) ... stage
            ``k`` with the transitions into them (eval mode, no gradients).
        with_cp: activation checkpointing in every block (saves memory, costs time).
        zero_init_residual: the last norm of each block starts at 0 (default initialisation only).
        multiscale_output: the last module of stage 4 fuses into every branch (True) or branch 0 only.
        pretrained: deprecated spelling of ``init_cfg = {type = "Pretrained", checkpoint = ...}``.
        init_cfg: weight initialisation table(s).
    """

    def __init__(
        self,
        extra: Mapping[str, Any],
        in_channels: int = 3,
        stem_channels: int = 64,
        conv_cfg: Optional[Mapping[str, Any]] = None,
        norm_cfg: Mapping[str, Any] = {"type": "BN"},  # noqa: B006 - read only
        norm_eval: bool = True,
        frozen_stages: int = -1,
        with_cp: bool = False,
        zero_init_residual: bool = False,
        multiscale_output: bool = True,
        pretrained: Optional[str] = None,
        init_cfg: Optional[Any] = None,
    ) -> None:
        stages = _check_extra(extra)
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"HRNet: frozen_stages must be in [-1, 4], got {frozen_stages}")
        if pretrained is not None and init_cfg is not None:
            raise ValueError("HRNet: give either 'pretrained' (deprecated) or 'init_cfg', not both")
        self._default_init = pretrained is None and init_cfg is None
        if pretrained is not None:
            logger.warning("HRNet: 'pretrained' is deprecated, use init_cfg = {type = 'Pretrained', ...}")
            init_cfg = {"type": "Pretrained", "checkpoint": pretrained}
        elif init_cfg is None:
            init_cfg = _default_init_cfg()
        super().__init__(init_cfg)
        self.extra = stages
        self.conv_cfg = None if conv_cfg is None else dict(conv_cfg)
        self.norm_cfg = dict(norm_cfg)
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual
        self.multiscale_output = multiscale_output

        # stem: two stride-2 3x3 convs
        self.conv1 = build_conv_layer(self.conv_cfg, in_channels, stem_channels, 3, stride=2, padding=1,
                                      bias=False)  # fmt: skip
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(self.conv_cfg, stem_channels, stem_channels, 3, stride=2, padding=1,
                                      bias=False)  # fmt: skip
        self.norm2_name, norm2 = build_norm_layer(self.norm_cfg, stem_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)

        # stage 1: a single branch of blocks
        cfg = stages["stage1"]
        block = BLOCKS[cfg["block"]]
        planes = int(cfg["num_channels"][0])
        self.layer1 = self._make_layer(block, stem_channels, planes, int(cfg["num_blocks"][0]))
        channels = [planes * block.expansion]

        # stages 2-4: transition, then HR modules
        for k in (2, 3, 4):
            cfg = stages[f"stage{k}"]
            block = BLOCKS[cfg["block"]]
            wanted = [int(c) * block.expansion for c in cfg["num_channels"]]
            self.add_module(f"transition{k - 1}", self._make_transition(channels, wanted))
            stage, channels = self._make_stage(cfg, wanted, multiscale_output=multiscale_output or k < 4)
            self.add_module(f"stage{k}", stage)
        #: channels of each returned feature map (the neck's ``in_channels``)
        self.out_channels: tuple[int, ...] = tuple(channels)
        self._freeze_stages()

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    # -- construction -------------------------------------------------------------------------------

    def _block_args(self) -> dict[str, Any]:
        return {"with_cp": self.with_cp, "conv_cfg": self.conv_cfg, "norm_cfg": self.norm_cfg}

    def _make_layer(self, block: type, inplanes: int, planes: int, num_blocks: int) -> nn.Sequential:
        cout = planes * block.expansion
        downsample = _conv_norm(self.conv_cfg, self.norm_cfg, inplanes, cout, 1) if inplanes != cout else None
        blocks = [block(inplanes, planes, 1, downsample=downsample, **self._block_args())]
        blocks += [block(cout, planes, 1, **self._block_args()) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def _make_transition(self, previous: list[int], current: list[int]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, cout in enumerate(current):
            if i < len(previous):
                if previous[i] == cout:
                    layers.append(None)
                else:
                    layers.append(_conv_norm(self.conv_cfg, self.norm_cfg, previous[i], cout, 3, relu=True))
                continue
            steps = []
            cin = previous[-1]
            for step in range(i + 1 - len(previous)):
                last = step == i - len(previous)
                cstep = cout if last else cin
                steps.append(_conv_norm(self.conv_cfg, self.norm_cfg, cin, cstep, 3, 2, relu=True))
                cin = cstep
            layers.append(nn.Sequential(*steps))
        return layers

    def _make_stage(
        self, cfg: Mapping[str, Any], in_channels: list[int], multiscale_output: bool
    ) -> tuple[nn.Sequential, list[int]]:
        block = BLOCKS[cfg["block"]]
        modules = []
        num_modules = int(cfg["num_modules"])
        for m in range(num_modules):
            module = HRModule(
                int(cfg["num_branches"]),
                block,
                [int(b) for b in cfg["num_blocks"]],
                in_channels,
                [int(c) for c in cfg["num_channels"]],
                # only the last module of the last stage may fuse into branch 0 alone
                multiscale_output=multiscale_output or m < num_modules - 1,
                with_cp=self.with_cp,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
            )
            modules.append(module)
            in_channels = module.out_channels
        return nn.Sequential(*modules), list(in_channels)

    # -- weights ------------------------------------------------------------------------------------

    def init_weights(self) -> None:
        """Apply ``init_cfg``; with the default initialisation and ``zero_init_residual`` also zero the
        last norm of every block (each block starts as its shortcut)."""
        if self.is_init:
            return
        super().init_weights()
        if self._default_init and self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    constant_init(m.last_norm, 0)

    # -- training state -----------------------------------------------------------------------------

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: list[nn.Module] = [self.conv1, self.norm1, self.conv2, self.norm2]
        if self.frozen_stages >= 1:
            modules.append(self.layer1)
        for k in range(2, self.frozen_stages + 1):
            modules += [getattr(self, f"transition{k - 1}"), getattr(self, f"stage{k}")]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> HRNet:
        """Set train/eval mode, then keep frozen stages (and, with ``norm_eval``, all batch norms) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- forward ------------------------------------------------------------------------------------

    @staticmethod
    def _transit(transition: nn.ModuleList, maps: list[Tensor]) -> list[Tensor]:
        """Apply a transition: existing branches keep (or re-channel) their map, new ones start from the
        lowest-resolution map."""
        out = []
        for i, layer in enumerate(transition):
            source = maps[i] if i < len(maps) else maps[-1]
            out.append(source if layer is None else layer(source))
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """(B, in_channels, H, W) -> tuple of (B, out_channels[i], H / 2**(i + 2), W / 2**(i + 2))."""
        if x.dim() != 4:
            raise ValueError(f"HRNet: expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        maps = [self.layer1(x)]
        for k in (2, 3, 4):
            maps = self._transit(getattr(self, f"transition{k - 1}"), maps)
            maps = getattr(self, f"stage{k}")(maps)
        return tuple(maps)


__all__ = ["BLOCKS", "HRNet"]
