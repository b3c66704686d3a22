"""``detcore flops CONFIG [--shape H W]``: FLOPs and parameters of a config's model, per module."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flops",
        help="FLOPs and parameters of a config's model, per module",
        description="Count the FLOPs of one inference call of CONFIG's model (initial weights) on a random "
        "image of --shape, per module up to --depth levels, with torch.utils.flop_counter.",
    )
    p.add_argument("config", help="the model's TOML config")
    p.add_argument(
        "--shape", type=int, nargs="+", default=[1280, 800], metavar="N",
        help="input height and width (one number: square; default: 1280 800, as the reference)",
    )  # fmt: skip
    p.add_argument("--depth", type=int, default=2, help="module levels in the table (default: 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.api import init_detector
    from detcore.errors import DetcoreError
    from detcore.tools.flops import detector_flops

    if len(args.shape) not in (1, 2) or min(args.shape) < 1:
        raise DetcoreError(f"--shape: one or two positive numbers (H W), got {args.shape}")
    height, width = (args.shape * 2)[:2]
    model = init_detector(args.config, cfg_options=args.overrides)
    print(detector_flops(model, (height, width), args.depth).format())
    return 0
