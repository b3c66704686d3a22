"""``detcore demo``: train, evaluate and visualise a small detector on the embedded shapes data."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from detcore.tools.demo import DEFAULT_CONFIG

    p = subparsers.add_parser("demo", help="train and evaluate a small detector on the embedded shapes data")
    p.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help=f"demo config (default: {DEFAULT_CONFIG.name})"
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="number of training epochs (default: the config's)"
    )
    p.add_argument("--out-dir", default="demo_out", help="where everything is written (default: demo_out/)")
    p.add_argument("--num-pictures", type=int, default=8, help="held-out images to draw (default: 8)")
    p.add_argument(
        "--score-thr",
        type=float,
        default=0.15,
        help="draw detections above this score (default: 0.15; FCOS scores include centerness and run low)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="fp32, or bf16: bfloat16 convolutions and linears, float32 boxes (fp32 with a warning "
        "where the CPU has no native bf16); default: the config's precision, else automatic: bf16 where "
        "the CPU computes it natively, fp32 elsewhere",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.tools.demo import print_summary, run_demo

    overrides = list(args.overrides)
    if args.precision is not None:  # the config key, so training, evaluation and the pictures all use it
        overrides.append(f'precision="{args.precision}"')
    summary = run_demo(args.config, args.out_dir, args.epochs, args.num_pictures, overrides, args.score_thr)
    print_summary(summary)
    return 0
