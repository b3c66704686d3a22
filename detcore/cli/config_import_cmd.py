"""``detcore config import REFERENCE_CONFIG.py [-o OUT.toml]``: a reference Python config as one detcore
TOML config (read without executing it; see :mod:`detcore.migration.config_import`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_import_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="convert a reference (MMDetection 1.x/2.x/3.x) Python config to a detcore TOML config",
        description="Read a reference Python config and its _base_ files without running them, map the "
        "keys detcore spells differently and write one TOML config. Types that no installed plugin "
        "registers are listed with the distribution to install.",
    )
    p.add_argument("config", help="path to the reference .py config")
    p.add_argument("-o", "--output", metavar="OUT.toml", help="write here (default: standard output)")
    p.add_argument(
        "--style",
        choices=("auto", "1.x", "2.x", "3.x"),
        default="auto",
        help="the reference version the config is written for (default: detected from its keys)",
    )
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from detcore.migration.config_import import import_config

    result = import_config(args.config, style=args.style)
    text = result.to_toml()
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"detcore: wrote {out} (from {args.config}, reference {result.style} style)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in result.notes:
        print(f"detcore: note: {note}", file=sys.stderr)
    for hint in result.install_hints():
        print(f"detcore: warning: {hint}", file=sys.stderr)
    return 0
