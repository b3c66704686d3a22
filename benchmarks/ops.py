"""Time detcore.ops at realistic detection sizes: reference vs native on the CPU and, when a GPU and
torchvision are present, native vs torchvision on the GPU.

Usage: python benchmarks/ops.py [--threads 2] [--repeats 3] [--markdown]
Prints one row per case: median wall time of each implementation and the speed-up.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from typing import Callable, List, Optional

import torch

from detcore import ops


def _timeit(fn: Callable[[], object], repeats: int, sync: Optional[Callable[[], None]] = None) -> float:
    fn()  # warm-up
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _boxes(n: int, gen: torch.Generator, device: str) -> torch.Tensor:
    """Image-space boxes on an 800x1333 image, 16-256 px wide: overlapping like RPN proposals."""
    ctr = torch.rand(n, 2, generator=gen) * torch.tensor([1333.0, 800.0])
    wh = 16 + torch.rand(n, 2, generator=gen) * 240
    return torch.cat([ctr - wh / 2, ctr + wh / 2], 1).to(device)


def _rois(k: int, gen: torch.Generator, device: str) -> torch.Tensor:
    """Rois that FPN maps to its stride-4 level (scale < 112 px), on a 2-image batch."""
    ctr = torch.rand(k, 2, generator=gen) * torch.tensor([1344.0, 800.0])
    wh = 8 + torch.rand(k, 2, generator=gen) * 104
    b = torch.randint(0, 2, (k, 1), generator=gen).float()
    return torch.cat([b, ctr - wh / 2, ctr + wh / 2], 1).to(device)


def cases(device: str):
    gen = torch.Generator().manual_seed(0)
    for n in (1000, 10000, 50000):
        boxes, scores = _boxes(n, gen, device), torch.rand(n, generator=gen).to(device)
        yield f"nms {n // 1000}k boxes (iou 0.7)", "nms", (lambda b=boxes, s=scores: (b, s, 0.7))
    feats = torch.randn(2, 256, 200, 336, generator=gen).to(device)
    for k in (512, 2000):
        rois = _rois(k, gen, device)
        for size in (7, 14):
            yield (
                f"roi_align {k} rois {size}x{size} (2x256x200x336)",
                "roi_align",
                (lambda r=rois, s=size: (feats, r, s, 0.25, 0, True)),
            )
    rois = _rois(512, gen, device)
    doff = (torch.randn(512, 2, 7, 7, generator=gen) * 0.5).to(device)
    yield (
        "deform_roi_pool 512 rois 7x7 offsets (fwd+bwd)",
        "deform_roi_pool",
        (lambda: (feats, rois, doff, 7, 0.25, 0, 0.1)),
    )
    psmaps = torch.randn(1, 49 * 21, 38, 63, generator=gen).to(device)
    psrois = _rois(300, gen, device) * torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0], device=device) * 0.45
    ps_name = "ps_roi_pool 300 rois 7x7 1x1029x38x63 (fwd+bwd)"
    yield ps_name, "ps_roi_pool", (lambda: (psmaps, psrois, 7, 1 / 16))
    x = torch.randn(1, 256, 100, 168, generator=gen).to(device)
    w = torch.randn(256, 256, 3, 3, generator=gen).to(device) * 0.01
    off = torch.randn(1, 18, 100, 168, generator=gen).to(device)
    yield "deform_conv2d 1x256x100x168 3x3->256", "deform_conv2d", (lambda: (x, off, w, None, 1, 1))
    yield "deform_conv2d same (fwd+bwd)", "deform_conv2d_train", (lambda: (x, off, w, None, 1, 1))
    anchors, gts = _boxes(100000, gen, device), _boxes(50, gen, device)
    yield "box_overlaps 100k anchors x 50 gts (iou)", "box_overlaps", (lambda: (anchors, gts))
    logits = torch.randn(100000, 80, generator=gen).to(device)
    targets = torch.randint(0, 81, (100000,), generator=gen).to(device)
    yield "sigmoid_focal_loss 100k x 80 (fwd+bwd)", "focal", (lambda: (logits, targets))


def _with_grad(args):
    """Fresh leaf copies of the deform conv's input, offset and weight that require grad."""
    x, off, w, b, s, p = args
    return x.detach().requires_grad_(), off.detach().requires_grad_(), w.detach().requires_grad_(), b, s, p


def _call(kind: str, args, impl: str):
    """Run one case under `impl` in {"reference", "native", "torchvision"} (the argument orders match)."""
    if impl == "torchvision":
        lib = importlib.import_module("torchvision.ops")
        fns = {"nms": lib.nms, "roi_align": lib.roi_align, "deform": lib.deform_conv2d, "iou": lib.box_iou}
    else:
        os.environ["DETCORE_OPS"] = impl
        fns = {
            "nms": ops.nms,
            "roi_align": ops.roi_align,
            "deform": ops.deform_conv2d,
            "iou": ops.box_overlaps,
        }
    if kind in ("nms", "roi_align"):
        return fns[kind](*args)
    if kind == "deform_conv2d":
        return fns["deform"](*args)
    if kind == "deform_conv2d_train":
        x, off, w, b, s, p = _with_grad(args)
        fns["deform"](x, off, w, b, s, p).sum().backward()
        return x.grad
    if kind == "deform_roi_pool" and impl != "torchvision":
        feats, rois, off, *rest = args
        feats, off = feats.detach().requires_grad_(), off.detach().requires_grad_()
        ops.deform_roi_pool(feats, rois, off, *rest).sum().backward()
        return off.grad
    if kind == "ps_roi_pool" and impl != "torchvision":
        maps, rois, *rest = args
        maps = maps.detach().requires_grad_()
        ops.ps_roi_pool(maps, rois, *rest).sum().backward()
        return maps.grad
    if kind == "box_overlaps":
        return fns["iou"](*args)
    if kind == "focal" and impl != "torchvision":
        logits, targets = args
        logits = logits.detach().requires_grad_()
        ops.sigmoid_focal_loss(logits, targets, reduction="sum").backward()
        return logits.grad
    raise KeyError(f"no {impl} implementation of {kind}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated op kinds to run: nms, roi_align, deform_roi_pool, ps_roi_pool, deform_conv2d, "
        "deform_conv2d_train, box_overlaps, focal",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not ops.native_available():
        raise SystemExit("detcore_native is not installed: pip install --no-build-isolation ./native")
    rows = []
    print(f"CPU: torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    only = {k for k in args.only.split(",") if k}
    for name, kind, make in cases("cpu"):
        if only and kind not in only:
            continue
        a = make()
        t_ref = _timeit(lambda k=kind, a=a: _call(k, a, "reference"), args.repeats)
        t_nat = _timeit(lambda k=kind, a=a: _call(k, a, "native"), args.repeats)
        rows.append((name, t_ref, t_nat))
        print(
            f"  {name:48s} reference {t_ref * 1e3:9.1f} ms   native {t_nat * 1e3:9.1f} ms"
            f"   x{t_ref / t_nat:6.1f}"
        )
    gpu_rows = []
    if torch.cuda.is_available():
        has_tv = importlib.util.find_spec("torchvision") is not None
        print(f"GPU: {torch.cuda.get_device_name()}")
        for name, kind, make in cases("cuda"):
            if only and kind not in only:
                continue
            a = make()
            t_nat = _timeit(
                lambda k=kind, a=a: _call(k, a, "native"), args.repeats * 5, torch.cuda.synchronize
            )
            t_tv = None
            if has_tv and kind not in ("focal", "deform_roi_pool", "ps_roi_pool"):
                t_tv = _timeit(
                    lambda k=kind, a=a: _call(k, a, "torchvision"), args.repeats * 5, torch.cuda.synchronize
                )
            gpu_rows.append((name, t_nat, t_tv))
            tv_s = (
                f"torchvision {t_tv * 1e3:8.2f} ms  ratio {t_nat / t_tv:5.2f}" if t_tv else "torchvision n/a"
            )
            print(f"  {name:48s} native {t_nat * 1e3:8.2f} ms   {tv_s}")
    if args.markdown:
        print(f"\n| op (CPU, {args.threads} threads) | reference | native | speed-up |")
        print("| --- | ---: | ---: | ---: |")
        for name, r, n in rows:
            print(f"| {name} | {r * 1e3:.1f} ms | {n * 1e3:.1f} ms | {r / n:.1f}x |")
        if gpu_rows:
            print("\n| op (GPU) | native | torchvision | native / torchvision |")
            print("| --- | ---: | ---: | ---: |")
            for name, n, t in gpu_rows:
                tv_s = f"{t * 1e3:.2f} ms | {n / t:.2f}" if t else "n/a | n/a"
                print(f"| {name} | {n * 1e3:.2f} ms | {tv_s} |")


if __name__ == "__main__":
    main()
