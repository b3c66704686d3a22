"""Backbone figures: forward time of ResNet-50 and ResNet-50-FPN, and the parameter/shape table.

    python benchmarks/backbones.py                  # forward times, CPU (2 threads) and GPU if present
    python benchmarks/backbones.py --table          # markdown table of parameter counts and output shapes

Timing: batch 1, eval mode, ``torch.no_grad()``, default 1x3x800x1216 input (an 800x1333 COCO test
image padded to a multiple of 32), ``--warmup`` untimed runs then ``--repeats`` timed runs; prints the
median and the minimum in milliseconds. The table builds every model on the meta device (no memory,
no compute) and sums the reference key lists in ``../shared/reference/checkpoint-keys`` when present.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import detcore

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY_DIR = REPO_ROOT.parent / "shared" / "reference" / "checkpoint-keys"

C2_C5 = [256, 512, 1024, 2048]
#: the FPN set-ups of the reference's standard configs
NECKS: dict[str, dict[str, Any]] = {
    # Faster/Mask R-CNN, RPN, Cascade, HTC: P2-P6, P6 by max-pooling P5
    "FPN P2-P6": {"type": "FPN", "in_channels": C2_C5, "out_channels": 256, "num_outs": 5},
    # RetinaNet: P3-P7, P6 and P7 by stride-2 convs on C5
    "FPN P3-P7 (on_input)": {
        "type": "FPN",
        "in_channels": C2_C5,
        "out_channels": 256,
        "num_outs": 5,
        "start_level": 1,
        "add_extra_convs": "on_input",
    },
    # FCOS: P3-P7, extra convs on P5, ReLU between them
    "FPN P3-P7 (on_output)": {
        "type": "FPN",
        "in_channels": C2_C5,
        "out_channels": 256,
        "num_outs": 5,
        "start_level": 1,
        "add_extra_convs": "on_output",
        "relu_before_extra_convs": True,
    },
}
DCN_C3_C5 = {
    "dcn": {"type": "DCN", "deform_groups": 1, "fallback_on_stride": False},
    "stage_with_dcn": [False, True, True, True],
}
BACKBONES: dict[str, dict[str, Any]] = {
    "ResNet-50": {"type": "ResNet", "depth": 50},
    "ResNet-50 (caffe)": {
        "type": "ResNet",
        "depth": 50,
        "style": "caffe",
        "norm_cfg": {"type": "BN", "requires_grad": False},
    },
    "ResNet-101": {"type": "ResNet", "depth": 101},
    "ResNeXt-101-32x4d": {"type": "ResNeXt", "depth": 101, "groups": 32, "base_width": 4},
    "ResNeXt-101-64x4d": {"type": "ResNeXt", "depth": 101, "groups": 64, "base_width": 4},
    "ResNeXt-101-64x4d DCN c3-c5": {
        "type": "ResNeXt",
        "depth": 101,
        "groups": 64,
        "base_width": 4,
        **DCN_C3_C5,
    },
}
#: (backbone, neck) -> reference checkpoint whose backbone.* + neck.* entries it must reproduce
COMBINATIONS: list[tuple[str, str, str | None]] = [
    ("ResNet-50", "FPN P2-P6", "faster_rcnn_r50_fpn_1x_coco"),
    ("ResNet-50", "FPN P3-P7 (on_input)", "retinanet_r50_fpn_1x_coco"),
    ("ResNet-50 (caffe)", "FPN P3-P7 (on_output)", "fcos_r50_caffe_fpn_gn-head_1x_coco"),
    ("ResNet-101", "FPN P2-P6", "mask_rcnn_r101_fpn_1x_coco"),
    ("ResNet-101", "FPN P3-P7 (on_input)", "retinanet_r101_fpn_1x_coco"),
    ("ResNeXt-101-32x4d", "FPN P2-P6", "mask_rcnn_x101_32x4d_fpn_1x_coco"),
    ("ResNeXt-101-32x4d", "FPN P3-P7 (on_input)", None),
    ("ResNeXt-101-64x4d", "FPN P2-P6", "faster_rcnn_x101_64x4d_fpn_1x_coco"),
    ("ResNeXt-101-64x4d", "FPN P3-P7 (on_input)", "retinanet_x101_64x4d_fpn_1x_coco"),
    (
        "ResNeXt-101-64x4d DCN c3-c5",
        "FPN P2-P6",
        "htc_x101_64x4d_fpn_dconv_c3-c5_mstrain_400_1400_16x1_20e_coco",
    ),
]
#: torchvision ImageNet models: (kind, depth, (groups, base_width)) -> (name, published params, fc params)
TORCHVISION: dict[tuple[str, int, tuple[int, ...]], tuple[str, int, int]] = {
    ("ResNet", 18, ()): ("resnet18", 11_689_512, 513_000),
    ("ResNet", 34, ()): ("resnet34", 21_797_672, 513_000),
    ("ResNet", 50, ()): ("resnet50", 25_557_032, 2_049_000),
    ("ResNet", 101, ()): ("resnet101", 44_549_160, 2_049_000),
    ("ResNet", 152, ()): ("resnet152", 60_192_808, 2_049_000),
    ("ResNeXt", 50, (32, 4)): ("resnext50_32x4d", 25_028_904, 2_049_000),
    ("ResNeXt", 101, (32, 8)): ("resnext101_32x8d", 88_791_336, 2_049_000),
    ("ResNeXt", 101, (64, 4)): ("resnext101_64x4d", 83_455_272, 2_049_000),
}
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


# ------------------------------------------------------------------------------------------------ table


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def reference_count(name: str, prefixes: tuple[str, ...] = ("backbone.", "neck.")) -> int | None:
    """Parameters of a reference checkpoint's entries under ``prefixes`` (buffers left out)."""
    path = KEY_DIR / f"{name}.txt"
    if not path.is_file():
        return None
    total = 0
    for line in path.read_text().splitlines()[1:]:
        m = re.match(r"^(\S+) \(([\d, ]*)\)$", line.strip())
        if m and m.group(1).startswith(prefixes) and not m.group(1).endswith(_BUFFERS):
            total += torch.Size(int(s) for s in m.group(2).replace(",", " ").split()).numel()
    return total


def fmt_shapes(shapes: list) -> str:
    return ", ".join("x".join(str(d) for d in s) for s in shapes)


def _build(kind: str, cfg: dict[str, Any]) -> nn.Module:
    with torch.device("meta"):
        return detcore.build(kind, cfg).eval()


def count_table() -> str:
    """Parameters of each (backbone, neck) of :data:`COMBINATIONS` and of the reference's key list."""
    lines = [
        "| backbone | neck | backbone params | neck params | backbone + neck "
        "| reference: backbone.* + neck.* of the key list |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for bname, nname, ref in COMBINATIONS:
        nb, nn_ = count(_build("backbone", BACKBONES[bname])), count(_build("neck", NECKS[nname]))
        ref_n = reference_count(ref) if ref else None
        if ref is None:
            ref_txt = "— (no reference checkpoint listed)"
        elif ref_n is None:
            ref_txt = f"key list {ref} not found"
        else:
            ref_txt = f"{ref_n:,} (`{ref}`){' ✓' if ref_n == nb + nn_ else ' ✗ MISMATCH'}"
        lines.append(f"| {bname} | {nname} | {nb:,} | {nn_:,} | {nb + nn_:,} | {ref_txt} |")
    return "\n".join(lines)


def shape_table(size: tuple[int, int]) -> str:
    """Output shapes (C x H x W) of every backbone and of every neck on ResNet-50 features."""
    lines = [
        f"| module | outputs for a 1x3x{size[0]}x{size[1]} input (C x H x W, batch 1) |",
        "| --- | --- |",
    ]
    x = torch.empty(1, 3, *size, device="meta")
    with torch.no_grad():
        for bname, cfg in BACKBONES.items():
            if "dcn" in cfg:  # deformable sampling has no meta kernel; a DCN stage keeps the shapes
                cfg = {k: v for k, v in cfg.items() if k not in DCN_C3_C5}
            lines.append(f"| {bname} | {fmt_shapes([f.shape[1:] for f in _build('backbone', cfg)(x)])} |")
        feats = _build("backbone", BACKBONES["ResNet-50"])(x)
        for nname, cfg in NECKS.items():
            lines.append(f"| {nname} | {fmt_shapes([o.shape[1:] for o in _build('neck', cfg)(feats)])} |")
    return "\n".join(lines)


def backbone_table() -> str:
    """Backbone parameter counts against torchvision's published ImageNet model counts minus ``fc``."""
    lines = [
        "| backbone | params | torchvision model | its published params | minus fc | |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for (kind, depth, gw), (tv_name, tv_count, fc) in TORCHVISION.items():
        cfg: dict[str, Any] = {"type": kind, "depth": depth}
        if gw:
            cfg.update(groups=gw[0], base_width=gw[1])
        n = count(_build("backbone", cfg))
        name = f"{kind}-{depth}" + (f"-{gw[0]}x{gw[1]}d" if gw else "")
        ok = "✓" if n == tv_count - fc else "✗ MISMATCH"
        lines.append(f"| {name} | {n:,} | {tv_name} | {tv_count:,} | {tv_count - fc:,} | {ok} |")
    return "\n".join(lines)


def tables(size: tuple[int, int]) -> str:
    return "\n\n".join([count_table(), shape_table(size), backbone_table()])


# ------------------------------------------------------------------------------------------------ timing


def time_forward(
    fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]
) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    On a shared machine the wall time grows with the other processes' load; the CPU time (summed over
    this process's threads) much less so.
    """
    for _ in range(warmup):
        fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def benchmark(device: str, size: tuple[int, int], warmup: int, repeats: int) -> None:
    torch.manual_seed(0)
    backbone = detcore.build("backbone", BACKBONES["ResNet-50"])
    neck = detcore.build("neck", NECKS["FPN P2-P6"])
    backbone.init_weights()
    neck.init_weights()
    backbone, neck = backbone.to(device).eval(), neck.to(device).eval()
    x = torch.randn(1, 3, *size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device == "cpu":
        label = (
            f"cpu ({torch.get_num_threads()} threads, {cpu_name()}, {os.cpu_count()} cores, {load_average()})"
        )
    else:
        label = f"{device} ({torch.cuda.get_device_name(device)})"
    print(label)
    with torch.no_grad():
        for name, fn in (("ResNet-50", lambda: backbone(x)), ("ResNet-50-FPN", lambda: neck(backbone(x)))):
            wall, cpu = time_forward(fn, warmup, repeats, sync)
            extra = f"; process CPU time median {statistics.median(cpu):8.1f} ms" if device == "cpu" else ""
            print(
                f"  {name:14s} 1x3x{size[0]}x{size[1]}: wall median {statistics.median(wall):8.1f} ms, "
                f"min {min(wall):8.1f} ms over {repeats} runs{extra}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="print the parameter/shape table instead")
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1216), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs on the CPU (GPU: 4x as many)")
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args(argv)
    size = (args.size[0], args.size[1])
    torch.set_num_threads(args.threads)
    if args.table:
        print(tables(size))
        return
    print(f"torch {torch.__version__}")
    benchmark("cpu", size, args.warmup, args.repeats)
    if torch.cuda.is_available() and not args.no_gpu:
        benchmark("cuda", size, max(args.warmup, 5), args.repeats * 4)
    else:
        print("GPU: none available")


if __name__ == "__main__":
    main()
