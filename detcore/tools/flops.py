"""FLOPs and parameters of a detector, per module (``detcore flops``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` during one inference forward of a
random image: matrix multiplications and convolutions (and attention), **2 FLOPs per multiply-add**.
The reference's ``get_flops`` reports multiply-accumulates under the name "FLOPs", so its figure is
half of ours; :class:`FlopsReport` carries both.

What is not counted: normalisation, activations, pooling, element-wise arithmetic, and custom ops
(RoIAlign, NMS, deformable convolution and the other detcore.ops kernels). Two-stage detectors'
figures depend on how many proposals reach the RoI head, which depends on the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

CAVEATS = (
    "FLOPs depend on the input shape; parameters do not.",
    "Counted: matmuls, convolutions, attention (2 FLOPs per multiply-add). Not counted: normalisation, "
    "activations, pooling, element-wise ops and custom ops (RoIAlign, NMS, deformable convolution).",
    "Two-stage and cascade detectors: the RoI heads' share depends on how many proposals reach them "
    "(an untrained model keeps whatever its random RPN proposes, up to test_cfg.rpn.max_per_img).",
)


@dataclass(frozen=True)
class ModuleRow:
    """One module of the report: its dotted name (``""`` is the whole model), parameters, FLOPs."""

    name: str
    params: int
    flops: int


@dataclass(frozen=True)
class FlopsReport:
    input_shape: tuple[int, int, int]  # (C, H, W) of the image fed to the model
    flops: int
    params: int
    rows: list[ModuleRow] = field(default_factory=list)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: what the reference's ``get_flops`` calls FLOPs."""
        return self.flops // 2

    def format(self) -> str:
        c, h, w = self.input_shape
        lines = [
            "=" * 72,
            f"Input shape: ({c}, {h}, {w})",
            f"FLOPs: {self.flops / 1e9:.2f} GFLOPs ({self.macs / 1e9:.2f} GMACs, the reference's 'Flops')",
            f"Params: {self.params / 1e6:.2f} M",
            "=" * 72,
            f"{'module':<44}{'params (M)':>12}{'GFLOPs':>10}{'share':>7}",
        ]
        for row in self.rows:
            share = f"{100 * row.flops / self.flops:.1f}%" if self.flops else "-"
            name = row.name or "(model)"
            lines.append(f"{name:<44}{row.params / 1e6:>12.3f}{row.flops / 1e9:>10.3f}{share:>7}")
        lines += ["", "Caveats:"] + [f"  {i}. {text}" for i, text in enumerate(CAVEATS, 1)]
        return "\n".join(lines)


def module_flops(model: nn.Module, run: Any, depth: int = 2) -> FlopsReport:
    """Count the FLOPs of ``run()`` (a call that runs ``model``) per submodule of ``model`` up to
    ``depth`` levels (1: backbone, neck, heads; 2: their children; ...). ``input_shape`` is left
    ``(0, 0, 0)``: the caller knows it."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, depth=None) as counter:
        run()
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    rows = []
    for name, module in model.named_modules():
        if name.count(".") + 1 > depth and name:
            continue
        key = f"{root}.{name}" if name else root
        params = sum(p.numel() for p in module.parameters())
        flops = int(counts.get(key, 0))
        if name and not params and not flops:
            continue
        rows.append(ModuleRow(name, params, flops))
    total = int(counts.get("Global", 0))
    return FlopsReport((0, 0, 0), total, sum(p.numel() for p in model.parameters()), rows)


def _input_batch(height: int, width: int, divisor: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    pad_h, pad_w = -(-height // divisor) * divisor, -(-width // divisor) * divisor
    imgs = torch.zeros(1, 3, pad_h, pad_w)
    imgs[:, :, :height, :width] = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    meta = {
        "img_shape": (height, width, 3),
        "pad_shape": (pad_h, pad_w, 3),
        "ori_shape": (height, width, 3),
        "scale_factor": [1.0, 1.0, 1.0, 1.0],
        "batch_input_shape": (pad_h, pad_w),
        "flip": False,
    }
    return imgs, [meta]


def detector_flops(model: nn.Module, shape: tuple[int, int] = (1280, 800), depth: int = 2) -> FlopsReport:
    """FLOPs of ``model``'s whole inference call on one random ``shape`` (H, W) image, padded to the
    config's ``data.pad_size_divisor`` (32 when unknown); the model is put in eval mode."""
    cfg = getattr(model, "cfg", None)
    divisor = int(cfg.get("data.pad_size_divisor", 32)) if cfg is not None else 32
    imgs, metas = _input_batch(shape[0], shape[1], max(divisor, 1))
    model.eval()
    with torch.no_grad():
        report = module_flops(model, lambda: model(imgs, metas), depth)
    return FlopsReport((3, shape[0], shape[1]), report.flops, report.params, report.rows)
