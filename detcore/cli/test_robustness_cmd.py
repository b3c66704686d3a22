"""``detcore test-robustness CONFIG CKPT --corruptions ... --severities ...``: AP under image corruptions."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "test-robustness",
        help="evaluate a checkpoint on corrupted test images (noise, blur, weather, digital); mPC and rPC",
        description="Evaluate CHECKPOINT on CONFIG's [data.test] once clean and once per corruption and "
        "severity (the robustness benchmark's corruptions, numpy/OpenCV), then print each AP, the mean "
        "performance under corruption (mPC) and its ratio to the clean AP (rPC).",
    )
    p.add_argument("config", help="TOML config file")
    p.add_argument("checkpoint", help="checkpoint file")
    p.add_argument(
        "--corruptions", nargs="+", default=["benchmark"], metavar="NAME",
        help="corruptions or groups: benchmark (15, default), all, holdout, noise, blur, weather, digital",
    )  # fmt: skip
    p.add_argument("--severities", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5], metavar="S")
    p.add_argument("--metric", default="bbox_mAP", help="the metric to summarise (default: bbox_mAP)")
    p.add_argument("--out", help="write every metric of every run to this JSON file")
    p.add_argument("--seed", type=int, default=0, help="noise seed (per image: seed + checksum of its name)")
    p.add_argument("--device", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.config import load_config
    from detcore.errors import DetcoreError
    from detcore.tools.robustness import (
        corrupted_config,
        evaluate,
        format_table,
        resolve_corruptions,
        summarize,
    )

    bad = [s for s in args.severities if not 0 <= s <= 5]
    if bad:
        raise DetcoreError(f"--severities: each must be 0..5, got {bad}")
    corruptions = resolve_corruptions(args.corruptions)
    cfg = load_config(args.config, args.overrides)
    runs: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="detcore_robustness_") as work:
        clean_metrics = evaluate(cfg, args.checkpoint, Path(work) / "clean", args.device)
        runs["clean"] = {"0": clean_metrics}
        if args.metric not in clean_metrics:
            raise DetcoreError(f"--metric {args.metric!r}: the evaluator gives {sorted(clean_metrics)}")
        corrupted: dict[str, dict[int, float]] = {}
        for name in corruptions:
            corrupted[name] = {}
            for severity in sorted(s for s in set(args.severities) if s > 0):
                metrics = evaluate(corrupted_config(cfg, name, severity, args.seed), args.checkpoint,
                                   Path(work) / f"{name}_{severity}", args.device)  # fmt: skip
                runs.setdefault(name, {})[str(severity)] = metrics
                corrupted[name][severity] = float(metrics[args.metric])
                print(f"{name} severity {severity}: {args.metric} = {corrupted[name][severity]:.4f}")
    clean = float(clean_metrics[args.metric])
    if any(corrupted.values()):
        print(format_table(args.metric, clean, corrupted))
    summary = summarize(clean, corrupted)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        clean_summary = {k: (None if math.isnan(v) else v) for k, v in summary.items()}
        Path(args.out).write_text(json.dumps({"metric": args.metric, "summary": clean_summary, "runs": runs}))
        print(f"wrote {args.out}")
    return 0
