"""Whole-detector figures on the CPU: inference time, training-step time and peak memory per family.

    python benchmarks/models.py                         # every family in FAMILIES
    python benchmarks/models.py --family retinanet      # one family (repeat --family for more)
    python benchmarks/models.py --json results.json     # also write the figures as JSON
    python benchmarks/models.py --score-thr 0 --inference-only   # untrained models keep max_per_img boxes

For each family the standard config in FAMILIES is built (backbone pretrained weights left out; the
heads get their own init, e.g. RetinaNet's prior-probability bias; ``--checkpoint family=path``
loads real weights instead, which changes how many candidates reach NMS; ``--score-thr 0`` makes an
untrained model return its ``max_per_img`` detections, so that post-processing and Mask R-CNN's mask
head and pasting do the work they do for a trained model). Each measurement runs in
a fresh subprocess with ``torch.set_num_threads(--threads)`` (default 2):

- inference: batch 1, eval mode, ``torch.no_grad()`` (as detcore's API and eval loop; autocast caches
  its bf16 weight copies there, not under ``inference_mode``), a 1333x800 image (``img_shape``
  800x1333, padded to 800x1344), the whole ``model(imgs, img_metas)`` including post-processing;
- training step: batch 2 of 1333x800 images with 5 random boxes each, ``model(**batch)``, backward,
  SGD step (lr 1e-4, so the weights stay sane across repeats);
- peak memory: the subprocess's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``),
  i.e. everything the process touched (Python, torch, model, activations), reported together with
  the RSS right after building the model so the difference is the phase's own working memory;
- FLOPs: one more inference forward under ``torch.utils.flop_counter.FlopCounterMode`` (it counts the
  matmuls and convolutions, 2 FLOPs per multiply-add; RoIAlign, NMS, deformable convs and element-wise
  work are not counted), and the fraction of the machine's fp32 GEMM peak the timed inference reaches
  (counted FLOPs / median inference time / peak). The peak is the best of a few 4096x4096 @ 4096x4096
  fp32 matmuls with the same thread count, measured in the inference process right before its timed
  runs (so a shared machine's changing load affects both alike); the header also gives the peak of a
  separate process at the start of the run.

``--warmup`` untimed runs, then ``--repeats`` timed ones; the median and minimum wall time are printed,
in seconds, with the median process CPU time (``time.process_time``; up to ``threads`` x the wall time
on an idle machine, much less than that when other processes compete for the cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

#: family -> its standard config (relative to the repository root). Add a family with one line.
FAMILIES: dict[str, str] = {
    "retinanet": "configs/retinanet/retinanet_r50_fpn_1x_coco.toml",
    "fsaf": "configs/fsaf/fsaf_r50_fpn_1x_coco.toml",
    "ssd": "configs/ssd/ssd300_coco.toml",
    "fcos": "configs/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.toml",
    "ga_retinanet": "configs/guided_anchoring/ga_retinanet_r50_caffe_fpn_1x_coco.toml",
    "rpn": "configs/rpn/rpn_r50_fpn_1x_coco.toml",
    "ga_faster_rcnn": "configs/guided_anchoring/ga_faster_r50_caffe_fpn_1x_coco.toml",
    "faster_rcnn": "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.toml",
    "mask_rcnn": "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.toml",
    "cascade_rcnn": "configs/cascade_rcnn/cascade_rcnn_r50_fpn_1x_coco.toml",
    "cascade_mask_rcnn": "configs/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco.toml",
    "faster_rcnn_hrnet": "configs/hrnet/faster_rcnn_hrnetv2p_w32_1x_coco.toml",
    "mask_rcnn_gcb": "configs/gcnet/mask_rcnn_r50_fpn_r16_gcb_c3-c5_1x_coco.toml",
    "faster_rcnn_attention": "configs/empirical_attention/faster_rcnn_r50_fpn_attention_1111_1x_coco.toml",
    "grid_rcnn": "configs/grid_rcnn/grid_rcnn_r50_fpn_gn-head_2x_coco.toml",
    "ms_rcnn": "configs/ms_rcnn/ms_rcnn_r50_caffe_fpn_1x_coco.toml",
    "tridentnet": "configs/tridentnet/tridentnet_r50_caffe_1x_coco.toml",
}

GEMM_N = 4096  # the peak-measuring matmul: (N, N) @ (N, N), 2 * N**3 FLOPs (--gemm-n changes it)

IMG_H, IMG_W = 800, 1333  # a COCO test image resized to (1333, 800) with keep_ratio (--size changes it)

#: inference variants: name -> (fold Conv-BN, precision, channels-last). "before" is the model as built
#: (the tree before the precision work: NCHW fp32, BatchNorm unfolded); "fp32" is what init_detector gives
INFERENCE_VARIANTS: dict[str, tuple[bool, str, bool]] = {
    "before": (False, "fp32", False),
    "fp32": (True, "fp32", False),
    "fp32_cl": (True, "fp32", True),
    "bf16": (True, "bf16", True),
}
TRAIN_VARIANTS: dict[str, str] = {"fp32": "fp32", "bf16": "bf16"}


def _padded(n: int) -> int:
    return -(-n // 32) * 32


def _reset_peak_rss() -> None:
    """Reset the process's resident-set high-water mark (Linux: ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_since_reset_mib() -> float:
    """``VmHWM`` (peak RSS since the last :func:`_reset_peak_rss`) in MiB; ru_maxrss where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return _peak_rss_mib()


def _rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return _peak_rss_mib()


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _build(config: str, checkpoint: str | None, score_thr: float | None = None) -> Any:
    import torch

    import detcore
    from detcore.config import load_config

    cfg = load_config(REPO_ROOT / config)
    model_cfg = cfg.to_dict()["model"]
    # no pretrained download for a timing run (a C4 shared head starts from the backbone's file too)
    model_cfg.get("backbone", {}).pop("init_cfg", None)
    (model_cfg.get("roi_head", {}).get("shared_head") or {}).pop("init_cfg", None)
    if score_thr is not None:
        test_cfg = model_cfg.get("test_cfg") or {}
        stage = test_cfg.get("rcnn") if "rcnn" in test_cfg else test_cfg  # two-stage: the final stage
        if "score_thr" in stage:
            stage["score_thr"] = score_thr
    torch.manual_seed(0)
    model = detcore.build("detector", model_cfg)
    if checkpoint:
        from detcore.engine.checkpoint import extract_state_dict, load_checkpoint_file, load_weights

        load_weights(model, extract_state_dict(load_checkpoint_file(checkpoint, map_location="cpu")))
    else:
        model.init_weights()
    return model


def _batch(batch_size: int, with_gt: bool, size: tuple[int, int] = (IMG_H, IMG_W)) -> dict[str, Any]:
    """Random ``size`` (h, w) images padded to a multiple of 32; with ``with_gt`` 5 random boxes per image
    (at most a third of the image each) with labels and box-filling masks."""
    import numpy as np
    import torch

    IMG_H, IMG_W = size  # noqa: N806 - the module's default, replaced
    PAD_H, PAD_W = _padded(IMG_H), _padded(IMG_W)  # noqa: N806
    box_max = min(IMG_H, IMG_W) // 3

    from detcore.structures.instances import Instances
    from detcore.structures.masks import BitmapMasks

    gen = torch.Generator().manual_seed(0)
    imgs = torch.zeros(batch_size, 3, PAD_H, PAD_W)
    imgs[:, :, :IMG_H, :IMG_W] = torch.randn(batch_size, 3, IMG_H, IMG_W, generator=gen)
    metas = [
        {
            "img_shape": (IMG_H, IMG_W, 3),
            "pad_shape": (PAD_H, PAD_W, 3),
            "ori_shape": (IMG_H, IMG_W, 3),
            "scale_factor": [1.0, 1.0, 1.0, 1.0],
            "batch_input_shape": (PAD_H, PAD_W),
            "flip": False,
        }
        for _ in range(batch_size)
    ]
    batch: dict[str, Any] = {"imgs": imgs, "img_metas": metas}
    if with_gt:
        gts = []
        for _ in range(batch_size):
            xy = torch.rand(5, 2, generator=gen) * torch.tensor([IMG_W - box_max, IMG_H - box_max])
            wh = box_max / 8 + torch.rand(5, 2, generator=gen) * box_max * 7 / 8
            bboxes = torch.cat([xy, xy + wh], 1)
            masks = np.zeros((5, PAD_H, PAD_W), dtype=np.uint8)
            for m, (x1, y1, x2, y2) in zip(masks, bboxes.round().int().tolist()):
                m[y1:y2, x1:x2] = 1
            gts.append(
                Instances(
                    bboxes=bboxes,
                    labels=torch.randint(0, 80, (5,), generator=gen),
                    masks=BitmapMasks(masks, PAD_H, PAD_W),
                )
            )
        batch["gt_instances"] = gts
        batch["gt_ignored_instances"] = [Instances(bboxes=torch.zeros(0, 4)) for _ in range(batch_size)]
    return batch


def _measure(
    phase: str,
    config: str,
    checkpoint: str | None,
    threads: int,
    warmup: int,
    repeats: int,
    queue: Any,
    score_thr: float | None = None,
    variants: tuple[str, ...] = ("before", "fp32", "bf16"),
    size: tuple[int, int] = (IMG_H, IMG_W),
) -> None:
    """Run one phase in this (fresh) process for every variant, interleaved (variant A, B, ..., A, B,
    ...), so that a shared machine's changing load affects them alike; put the figures on ``queue``."""
    import copy

    import torch

    from detcore.models.fusion import fuse_detector_conv_bn
    from detcore.models.precision import set_precision

    torch.set_num_threads(threads)
    model = _build(config, checkpoint, score_thr)
    rss_model = _rss_mib()
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu_times: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, float] = {}
    extra: dict[str, Any] = {}
    if phase == "inference":
        dtypes = {INFERENCE_VARIANTS[v][1] for v in variants}
        extra["gemm_peak_flops"] = {p: _gemm_rate(max(3, repeats), p) for p in sorted(dtypes)}
        model.eval()
        fused, extra["fused_conv_bn"] = fuse_detector_conv_bn(model)
        models = {}
        for v in variants:
            fuse, precision, channels_last = INFERENCE_VARIANTS[v]
            m = copy.deepcopy(fused if fuse else model)
            set_precision(m, precision, channels_last=channels_last)
            models[v] = m
        del model, fused
        batch = _batch(1, with_gt=False, size=size)
        num_dets: dict[str, int] = {}
        with torch.no_grad():
            for i in range(warmup + repeats):
                for v in variants:
                    _reset_peak_rss()
                    start, cpu_start = time.perf_counter(), time.process_time()
                    results = models[v](batch["imgs"], batch["img_metas"])
                    if i >= warmup:
                        times[v].append(time.perf_counter() - start)
                        cpu_times[v].append(time.process_time() - cpu_start)
                    peaks[v] = max(peaks.get(v, 0.0), _peak_rss_since_reset_mib())
                    num_dets[v] = len(results[0])
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                models[variants[0]](batch["imgs"], batch["img_metas"])
        extra.update(detections=num_dets, flops=counter.get_total_flops())
    else:
        model.train()
        batch = _batch(2, with_gt=True, size=size)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        losses_of: dict[str, float] = {}
        for i in range(warmup + repeats):
            for v in variants:
                set_precision(model, TRAIN_VARIANTS[v])
                _reset_peak_rss()
                start, cpu_start = time.perf_counter(), time.process_time()
                losses = model(**batch)
                loss = sum(
                    sum(x) if isinstance(x, (list, tuple)) else x for k, x in losses.items() if "loss" in k
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if i >= warmup:
                    times[v].append(time.perf_counter() - start)
                    cpu_times[v].append(time.process_time() - cpu_start)
                peaks[v] = max(peaks.get(v, 0.0), _peak_rss_since_reset_mib())
                losses_of[v] = float(loss.detach())
        extra["loss"] = losses_of
    queue.put(
        {
            "phase": phase,
            "median_s": {v: statistics.median(t) for v, t in times.items()},
            "min_s": {v: min(t) for v, t in times.items()},
            "cpu_median_s": {v: statistics.median(t) for v, t in cpu_times.items()},
            "peak_rss_mib": peaks,
            "rss_after_build_mib": rss_model,
            **extra,
        }
    )


def _gemm_rate(repeats: int, precision: str = "fp32") -> float:
    """The best GEMM rate (FLOP/s) of ``repeats`` (N, N) @ (N, N) matmuls after one warm-up, in float32
    or (``precision = "bf16"``) bfloat16 operands (the rate autocast's bf16 convolutions can reach)."""
    import os

    import torch

    n = int(os.environ.get("DETCORE_BENCH_GEMM_N", GEMM_N))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    best = float("inf")
    for i in range(1 + repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if i > 0:
            best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def _measure_gemm(threads: int, repeats: int, queue: Any) -> None:
    import torch

    torch.set_num_threads(threads)
    queue.put(_gemm_rate(repeats))


def gemm_peak(threads: int, repeats: int) -> float:
    """fp32 GEMM peak of this machine at ``threads`` threads, in FLOP/s (measured in a fresh process)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure_gemm, args=(threads, repeats, queue))
    proc.start()
    return _result_of(proc, queue, "GEMM peak")


def _result_of(proc: Any, queue: Any, what: str) -> Any:
    """What ``proc`` puts on ``queue``; an error naming ``what`` if it exits without a result."""
    import queue as queue_mod

    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{what}: the measuring process exited with {proc.exitcode}") from None
    proc.join()
    return result


def run_family(
    family: str,
    checkpoint: str | None,
    threads: int,
    warmup: int,
    repeats: int,
    score_thr: float | None = None,
    phases: tuple[str, ...] = ("inference", "train_step"),
    variants: tuple[str, ...] = ("before", "fp32", "bf16"),
    size: tuple[int, int] = (IMG_H, IMG_W),
) -> dict[str, Any]:
    """The ``phases`` of one family, each in its own spawned process (the variants interleaved in it)."""
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {"family": family, "config": FAMILIES[family]}
    for phase in phases:
        queue = ctx.Queue()
        phase_variants = variants if phase == "inference" else tuple(TRAIN_VARIANTS)
        args = (phase, FAMILIES[family], checkpoint, threads, warmup, repeats, queue, score_thr,
                phase_variants, size)
        proc = ctx.Process(target=_measure, args=args)
        proc.start()
        out[phase] = _result_of(proc, queue, f"{family} {phase}")
    return out


def _ratio(figures: dict[str, float], slow: str, fast: str) -> str:
    if slow in figures and fast in figures:
        return f"{figures[slow] / figures[fast]:.2f}x"
    return "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--family",
        action="append",
        choices=sorted(FAMILIES),
        help="family to measure (repeatable; default: all)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FAMILY=PATH",
        help="weights to load for a family instead of the initial ones",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--score-thr", type=float, help="the final score threshold of every model's test_cfg (0: keep all)"
    )
    parser.add_argument("--inference-only", action="store_true", help="skip the training step")
    parser.add_argument("--gemm-n", type=int, default=GEMM_N, help="size of the peak-measuring matmul")
    parser.add_argument(
        "--variants",
        default="before,fp32,bf16",
        help=f"comma-separated inference variants of {sorted(INFERENCE_VARIANTS)} "
        "(default: before,fp32,bf16; the training step runs fp32 and bf16)",
    )
    parser.add_argument(
        "--size", default=f"{IMG_W}x{IMG_H}", metavar="WxH", help="image size (default: 1333x800)"
    )
    args = parser.parse_args(argv)
    if args.gemm_n != GEMM_N:
        import os

        os.environ["DETCORE_BENCH_GEMM_N"] = str(args.gemm_n)  # read by the spawned measuring processes
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in INFERENCE_VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {sorted(INFERENCE_VARIANTS)}")
    try:
        width, height = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WxH (e.g. 1333x800), got {args.size!r}")
    size = (height, width)
    phases = ("inference",) if args.inference_only else ("inference", "train_step")
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    families = args.family or sorted(FAMILIES)
    import torch

    peak = gemm_peak(args.threads, max(3, args.repeats))
    print(
        f"# CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, {args.warmup} warm-up + {args.repeats} timed runs, variants interleaved "
        "in one process per phase; wall s median (process CPU s median); "
        f"fp32 GEMM peak ({args.gemm_n}x{args.gemm_n} matmul, best of {max(3, args.repeats)}, "
        "separate process): "
        f"{peak / 1e9:.1f} GFLOP/s; the bf16 peak is measured in each inference process"
        + ("" if args.score_thr is None else f"; score_thr {args.score_thr:g}")
    )
    print(
        f"| family | variant | inference 1x{width}x{height} s | train step 2x{width}x{height} s "
        "| peak RSS inference (MiB) | peak RSS train (MiB) | forward GFLOPs | GEMM peak GFLOP/s "
        "| % of GEMM peak | detections |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for family in families:
        r = run_family(
            family, checkpoints.get(family), args.threads, args.warmup, args.repeats, args.score_thr, phases,
            variants, size,
        )
        results.append(r)
        inf, tr = r["inference"], r.get("train_step")
        r["gemm_fraction"] = {}
        for v in variants + tuple(t for t in TRAIN_VARIANTS if t not in variants and tr is not None):
            if v not in inf["median_s"]:  # a training variant not timed at inference
                print(f"| {family} | {v} | - | {tr['median_s'][v]:.2f} ({tr['cpu_median_s'][v]:.2f}) | - "
                      f"| {tr['peak_rss_mib'][v]:.0f} | | | | |")
                continue
            gemm = inf["gemm_peak_flops"][INFERENCE_VARIANTS[v][1]]
            r["gemm_fraction"][v] = inf["flops"] / inf["median_s"][v] / gemm
            has_train = tr is not None and v in tr["median_s"]
            train = f"{tr['median_s'][v]:.2f} ({tr['cpu_median_s'][v]:.2f})" if has_train else "-"
            train_rss = f"{tr['peak_rss_mib'][v]:.0f}" if has_train else "-"
            print(
                f"| {family} | {v} | {inf['median_s'][v]:.2f} ({inf['cpu_median_s'][v]:.2f}) | {train} "
                f"| {inf['peak_rss_mib'][v]:.0f} | {train_rss} | {inf['flops'] / 1e9:.1f} | {gemm / 1e9:.1f} "
                f"| {100 * r['gemm_fraction'][v]:.0f}% | {inf['detections'][v]} |"
            )
        train_ratio = _ratio(tr["median_s"], "fp32", "bf16") if tr is not None else "-"
        print(
            f"| {family} | ratios | bf16 vs fp32 {_ratio(inf['median_s'], 'fp32', 'bf16')} "
            f"(vs fp32_cl {_ratio(inf['median_s'], 'fp32_cl', 'bf16')}), fp32 vs before "
            f"{_ratio(inf['median_s'], 'before', 'fp32')} "
            f"(fp32_cl {_ratio(inf['median_s'], 'before', 'fp32_cl')}) "
            f"| bf16 vs fp32 {train_ratio} "
            f"| | | | | | {inf['fused_conv_bn']} Conv-BN folded |"
        )
    if args.json:
        summary = {"threads": args.threads, "torch": torch.__version__, "gemm_peak_flops": peak,
                   "size": [width, height]}
        args.json.write_text(json.dumps({**summary, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
