"""A compact TOML writer for imported configs: tables as ``[a.b]`` sections, arrays and the tables
inside arrays (pipeline steps, hooks) written inline, one array element per line when long."""

from __future__ import annotations

from typing import Any

import tomli_w

_WIDTH = 100


def dumps(data: dict[str, Any]) -> str:
    """``data`` (str keys; str, bool, int, float, list and dict values) as TOML text."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(node: dict[str, Any], path: list[str], lines: list[str]) -> None:
    top = not path  # top-level tables are always sections
    scalars = {k: v for k, v in node.items() if not (_is_section(v) or (top and isinstance(v, dict)))}
    sections = {k: v for k, v in node.items() if k not in scalars}
    if path and (scalars or not sections):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value, len(key) + 3)}")
    for key, value in sections.items():
        _table(value, [*path, key], lines)


def _is_section(value: Any) -> bool:
    """A dict with a nested dict becomes a ``[section]``; a flat dict with a few keys stays inline."""
    return isinstance(value, dict) and (
        any(isinstance(v, dict) for v in value.values()) or len(_inline(value)) > 60 or not value
    )


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _scalar(key)


def _scalar(value: Any) -> str:
    return tomli_w.dumps({"x": value}).split(" = ", 1)[1].strip()


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _scalar(value)


def _value(value: Any, indent: int) -> str:
    text = _inline(value)
    if not isinstance(value, list) or indent + len(text) <= _WIDTH:
        return text
    return "[\n" + "".join(f"    {_value(v, 4)},\n" for v in value) + "]"
