"""Entry point of the ``detcore`` command: global options, then one subcommand module each.

Every subcommand lives in its own module of this package with ``add_parser(subparsers)``, which
registers the subcommand and sets ``func(args) -> int`` on it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from detcore import __version__
from detcore.errors import DetcoreError

SUBCOMMAND_MODULES = (
    "detcore.cli.plugins_cmd",
    "detcore.cli.config_cmd",
    "detcore.cli.plugin_new",
    "detcore.cli.train",
    "detcore.cli.test",
    "detcore.cli.infer_cmd",
    "detcore.cli.browse_dataset_cmd",
    "detcore.cli.analyze_logs_cmd",
    "detcore.cli.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detcore", description="detcore: a plugin-based detection toolbox")
    parser.add_argument("--version", action="version", version=f"detcore {__version__}")
    parser.add_argument(
        "-p",
        dest="plugin_options",
        action="append",
        default=[],
        metavar="no:NAME",
        help="block plugin NAME for this command (repeatable), as pytest's -p no:NAME",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # subcommand not part of this build
                continue
            raise
        module.add_parser(subparsers)
    return parser


def blocked_from_options(options: Sequence[str]) -> list[str]:
    blocked = []
    for option in options:
        if not option.startswith("no:"):
            raise DetcoreError(f"-p {option}: only 'no:NAME' (block a plugin) is supported")
        blocked.append(option[3:])
    return blocked


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from detcore.plugins import block_plugins

        block_plugins(blocked_from_options(args.plugin_options))
        return int(args.func(args) or 0)
    except DetcoreError as exc:
        print(f"detcore: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
