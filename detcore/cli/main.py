"""Entry point of the ``detcore`` command: global options, then one subcommand module each.

Every subcommand lives in its own module of this package with ``add_parser(subparsers)``, which
registers the subcommand and sets ``func(args) -> int`` on it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from typing import Sequence

from detcore import __version__
from detcore.errors import ConfigWarning, DetcoreError, describe

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
    "detcore.cli.checkpoint_cmd",
    "detcore.cli.benchmark_cmd",
    "detcore.cli.flops_cmd",
    "detcore.cli.confusion_matrix_cmd",
    "detcore.cli.analyze_results_cmd",
    "detcore.cli.coco_error_analysis_cmd",
    "detcore.cli.convert_cmd",
    "detcore.cli.optimize_anchors_cmd",
    "detcore.cli.report_cmd",
    "detcore.cli.test_robustness_cmd",
    "detcore.cli.export_cmd",
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the full traceback of an error (also DETCORE_DEBUG=1)",
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
    """Run one ``detcore`` command; the exit status is the command's (errors: 1, interrupted: 130).

    This is the CLI's one error boundary: any exception becomes ``detcore: error: <where>: <what>`` on
    stderr, where ``<where>`` is the location the raising layer attached (config file and key path,
    image id and file, checkpoint path; see :func:`detcore.errors.located`). The traceback is printed
    only with ``--debug`` or ``DETCORE_DEBUG=1``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(args.debug) or os.environ.get("DETCORE_DEBUG", "") not in ("", "0")
    try:
        from detcore.plugins import block_plugins

        block_plugins(blocked_from_options(args.plugin_options))
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("detcore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's error boundary
        if debug:
            traceback.print_exc()
        print(f"detcore: error: {error_line(exc)}", file=sys.stderr)
        if not debug and not isinstance(exc, DetcoreError):
            print("detcore: (run with --debug or DETCORE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Config warnings as ``detcore: warning: <file>: <key>: <what>``; other warnings as Python shows them."""
    if issubclass(category, ConfigWarning):
        print(f"detcore: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: its location (if a layer attached one), the type unless it is detcore's own
    error, and the message. The first line of a multi-line message is kept whole; the rest follows."""
    return describe(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
