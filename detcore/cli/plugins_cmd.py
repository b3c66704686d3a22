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


def name_conflicts(registry) -> dict[str, dict[str, list[str]]]:
    """``{plugin: {"kind Name": [qualified names of every offer]}}`` for each component name that
    several plugins offer for one kind (the bare name is then an error; configs qualify it)."""
    out: dict[str, dict[str, list[str]]] = {}
    for kind in registry.kinds():
        by_name: dict[str, list] = {}
        for entry in registry.entries(kind):
            by_name.setdefault(entry.name, []).append(entry)
        for name, offers in by_name.items():
            if len(offers) > 1:
                for entry in offers:
                    out.setdefault(entry.plugin, {})[f"{kind} {name}"] = [e.qualified_name for e in offers]
    return out


def describe_plugins(include_builtins: bool = True) -> list[dict]:
    """One dict per known plugin: name, distribution, version, status, files, components, conflicts
    (component names another plugin offers too, with the qualified names that tell them apart), error
    and ``failed_at`` (import, hook check or the registration hook that raised)."""
    manager = get_plugin_manager()
    registry = get_registry()  # built first: a registration hook that raises marks its plugin failed
    conflicts = name_conflicts(registry)
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
                "conflicts": conflicts.get(info.name, {}) if info.loaded else {},
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
        for component, offers in p["conflicts"].items():
            print(f"    conflict: {component} is offered by {len(offers)} plugins; configs must name one of "
                  f"{', '.join(repr(o) for o in offers)}")
        if p["error"]:
            print(f"    failed at {p['failed_at']}:")
            print("      " + p["error"].rstrip().replace("\n", "\n      "))
    builtin = [p for p in plugins if p["builtin"]]
    hidden = [c for p in builtin if not args.builtins for c in p["conflicts"]]
    if hidden:
        names = ", ".join(sorted(set(hidden)))
        print(f"conflicts with built-in components: {names} (--builtins for details)")
    if builtin and not args.builtins:
        count = sum(len(n) for p in builtin for n in p["components"].values())
        print(
            f"(+ {len(builtin)} built-in plugins of detcore with {count} components; --builtins to list them)"
        )
    return 0
