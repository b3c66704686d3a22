"""``detcore config show CONFIG``: the fully merged config, optionally with where each key came from."""

from __future__ import annotations

import argparse

from detcore.config import load_config, validate_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="inspect configs; import reference configs")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the fully merged config as TOML")
    show.add_argument("config", help="path to a TOML config")
    show.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key with a TOML-typed value (repeatable)",
    )
    show.add_argument("--provenance", action="store_true", help="list the file or override that set each key")
    show.add_argument(
        "--validate", action="store_true",
        help="also check plugins, component keys and settings (train_cfg / test_cfg keys)",
    )
    show.set_defaults(func=run_show)
    from detcore.cli.config_import_cmd import add_import_parser

    add_import_parser(sub)


def run_show(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.validate:
        validate_config(cfg)
    print(cfg.to_toml(), end="")
    if args.provenance:
        print("\n# provenance (key = source)")
        width = max((len(k) for k in cfg.provenance), default=0)
        for key in sorted(cfg.provenance):
            print(f"# {key.ljust(width)} = {cfg.provenance[key]}")
    return 0
