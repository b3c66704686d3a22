"""``detcore plugins``: installed plugins, their distributions, versions, files and components."""

from __future__ import annotations

import argparse
import json

from detcore.plugins import get_plugin_manager
from detcore.registry import get_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugins", help="list installed plugins and what each registers")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--builtins", action="store_true", help="include the kernel's built-in plugins")
    p.set_defaults(func=run)


def describe_plugins(include_builtins: bool = True) -> list[dict]:
    """One dict per known plugin: name, distribution, version, status, files, components, error and
    ``failed_at`` (import, hook check or the registration hook that raised)."""
    manager = get_plugin_manager()
    registry = get_registry()  # built first: a registration hook that raises marks its plugin failed
    out = []
    for info in manager.infos.values():
        if info.builtin and not include_builtins:
            continue
        out.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "builtin": info.builtin,
                "status": info.status,
                "files": info.files,
                "components": registry.by_plugin(info.name) if info.loaded else {},
                "error": info.error,
                "failed_at": info.failed_at,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    plugins = describe_plugins(include_builtins=True)
    if args.json:
        print(json.dumps(plugins, indent=2))
        return 0
    for p in plugins:
        if p["builtin"] and not args.builtins:
            continue
        print(f"{p['name']}  ({p['distribution']} {p['version']})  [{p['status']}]")
        print(f"    module: {p['module']}")
        for f in p["files"]:
            print(f"    files:  {f}")
        for kind, names in p["components"].items():
            print(f"    {kind}: {', '.join(names)}")
        if p["error"]:
            print(f"    failed at {p['failed_at']}:")
            print("      " + p["error"].rstrip().replace("\n", "\n      "))
    builtin = [p for p in plugins if p["builtin"]]
    if builtin and not args.builtins:
        count = sum(len(n) for p in builtin for n in p["components"].values())
        print(
            f"(+ {len(builtin)} built-in plugins of detcore with {count} components; --builtins to list them)"
        )
    return 0
