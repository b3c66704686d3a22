"""``detcore optimize-anchors CONFIG``: anchor shapes fitted to the training boxes (k-means or DE)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "optimize-anchors",
        help="anchor widths/heights fitted to the training boxes (k-means or differential evolution)",
        description="Collect the ground-truth box shapes of CONFIG's [data.train] (each image rescaled to "
        "--input-shape with its aspect ratio kept) and fit --num-anchors anchor shapes maximising the mean "
        "best IoU; prints the anchors and the mean IoU, writes anchor_optimize_result.json.",
    )
    p.add_argument("config", help="the config whose [data.train] boxes to fit")
    p.add_argument(
        "--algorithm", choices=("k-means", "differential_evolution"), default="differential_evolution"
    )
    p.add_argument("--input-shape", type=int, nargs=2, default=[608, 608], metavar=("W", "H"))
    p.add_argument("--num-anchors", type=int, default=9, help="anchors to fit (default: 9, YOLOv3's)")
    p.add_argument("--iters", type=int, default=1000, help="k-means iterations / DE generations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=".", help="where to write anchor_optimize_result.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.config import load_config
    from detcore.data import build_dataset
    from detcore.tools.optimize_anchors import dataset_box_shapes, de_anchors, kmeans_anchors

    cfg = load_config(args.config, args.overrides)
    table = dict(cfg["data"]["train"])
    table.pop("pipeline", None)
    shapes = dataset_box_shapes(build_dataset(table, where="data.train"), args.input_shape)
    print(f"collected {len(shapes)} boxes")
    if args.algorithm == "k-means":
        anchors, iou = kmeans_anchors(shapes, args.num_anchors, args.iters, args.seed)
    else:
        def step(n: int, cost: float) -> None:
            if n == 1 or n % 50 == 0:
                print(f"differential_evolution step {n}: f(x)= {cost:.6f}")

        anchors, iou = de_anchors(shapes, args.num_anchors, args.iters, args.seed, on_step=step)
    rounded = [[round(float(w)), round(float(h))] for w, h in anchors]
    print(f"anchor {args.algorithm} finished; average IoU: {iou:.4f}")
    print(f"anchors (w, h) by area: {rounded}")
    out = Path(args.output_dir) / "anchor_optimize_result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"algorithm": args.algorithm, "input_shape": args.input_shape, "anchors": rounded,
              "mean_iou": iou, "num_boxes": len(shapes)}  # fmt: skip
    out.write_text(json.dumps(result))
    print(f"wrote {out}")
    return 0
