"""``detcore analyze-logs LOG.json ... --out curves.png``: loss and metric curves from JSON logs."""

from __future__ import annotations

import argparse

from detcore.tools.analyze_logs import plot_curves


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze-logs", help="plot loss/metric curves from JSON logs")
    p.add_argument("logs", nargs="+", help="<work_dir>/<timestamp>.log.json files")
    p.add_argument("--out", default="curves.png", help="picture to write (default: curves.png)")
    p.add_argument("--keys", nargs="+", default=["loss"], help="training scalars to plot (default: loss)")
    p.add_argument(
        "--metrics", nargs="+", default=["bbox_mAP"], help="validation metrics (default: bbox_mAP)"
    )
    p.add_argument("--title", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = plot_curves(args.logs, args.out, args.keys, args.metrics, args.title)
    print(f"wrote {out}")
    return 0
