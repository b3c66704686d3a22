"""``detcore browse-dataset CONFIG --out DIR``: pictures of pipeline outputs with their annotations."""

from __future__ import annotations

import argparse

from detcore.config import load_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("browse-dataset", help="write pictures of samples after the data pipeline")
    p.add_argument("config")
    p.add_argument("--out", default="browse", help="output folder (default: browse/)")
    p.add_argument("--num", type=int, default=8, help="number of samples (default: 8)")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detcore.tools.browse_dataset import browse_dataset

    written = browse_dataset(load_config(args.config, args.overrides), args.out, args.num, args.split)
    print(f"wrote {len(written)} pictures to {args.out}")
    return 0
