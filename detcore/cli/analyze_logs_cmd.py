"""``detcore analyze-logs [plot_curve|cal_train_time] LOG.json ...``: curves or training speed from JSON logs.

``plot_curve`` (the default when no mode is given) draws loss and metric curves; ``cal_train_time``
prints each log's slowest and fastest epoch, the spread over epochs and the mean time per iteration.
"""

from __future__ import annotations

import argparse

from detcore.errors import DetcoreError
from detcore.tools.analyze_logs import format_train_time, load_json_log, plot_curves, train_time_stats

MODES = ("plot_curve", "cal_train_time")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze-logs", help="plot loss/metric curves (plot_curve) or training speed (cal_train_time)"
    )
    p.add_argument(
        "logs",
        nargs="+",
        metavar="[MODE] LOG",
        help="optional mode (plot_curve, the default, or cal_train_time), then <work_dir>/*.log.json files",
    )
    p.add_argument("--out", default="curves.png", help="plot_curve: picture to write (default: curves.png)")
    p.add_argument("--keys", nargs="+", default=["loss"], help="plot_curve: training scalars (default: loss)")
    p.add_argument(
        "--metrics", nargs="+", default=["bbox_mAP"], help="plot_curve: validation metrics (default bbox_mAP)"
    )
    p.add_argument("--title", default=None, help="plot_curve: figure title")
    p.add_argument(
        "--include-outliers",
        action="store_true",
        help="cal_train_time: keep each epoch's first iteration (slow: data loader start-up)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    mode, logs = "plot_curve", list(args.logs)
    if logs[0] in MODES:
        mode = logs.pop(0)
    if not logs:
        raise DetcoreError(f"analyze-logs {mode}: no log file given")
    if mode == "cal_train_time":
        for log in logs:
            print(format_train_time(log, train_time_stats(load_json_log(log), args.include_outliers)))
        return 0
    out = plot_curves(logs, args.out, args.keys, args.metrics, args.title)
    print(f"wrote {out}")
    return 0
