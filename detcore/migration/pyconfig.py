"""Read a reference (MMDetection) Python config without executing it.

:func:`read_py_config` parses the file with :mod:`ast` and evaluates a safe subset of Python:

- statements: assignments to names (``a = ...``, ``a = b = ...``, ``a, b = ...``), ``a += ...``,
  docstrings; ``_base_ = "x.py"`` or a list of such paths, resolved relative to the file;
- expressions: literals (numbers, strings, ``True``/``False``/``None``), dicts, lists, tuples, sets,
  ``dict(...)`` / ``list(...)`` / ``tuple(...)`` calls (``**`` unpacking included), names defined
  earlier in the file or in a base, ``_base_.name`` / ``{{_base_.name}}`` references to a base's
  values, arithmetic (``+ - * / // % **``), ``%`` / ``str.format`` / f-string formatting, indexing
  and slicing, ``x if c else y`` and comparisons in it.

Anything else (imports, other calls, lambdas, comprehensions, attribute access on names) raises
:class:`ConfigError` naming the file and the line. Bases are merged the reference's way: dicts merge
key by key, other values replace, a dict with ``_delete_=True`` replaces the base's dict whole.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Any, Callable

from detcore.errors import ConfigError

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"

# '{{ _base_.a.b }}' (quoted, as the reference writes it, or bare) -> the expression _base_.a.b
_BASE_REF = re.compile(r"""(['"]?)\{\{\s*_base_\.([\w.]+)\s*\}\}\1""")

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_CONSTRUCTORS = {"dict", "list", "tuple"}


class _BaseRef:
    """The ``_base_`` name: attribute access walks the merged bases' values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values


def read_py_config(path: str | Path) -> dict[str, Any]:
    """The merged values of the reference config at ``path`` (its bases resolved), as plain Python
    data (dicts, lists, tuples, numbers, strings, None). ``_base_`` and ``_delete_`` keys are gone."""
    return _strip_delete(_read(Path(path).resolve(), ()))


def _read(path: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"circular _base_ chain: {chain}")
    if not path.is_file():
        where = f" (a _base_ of {stack[-1]})" if stack else ""
        raise ConfigError(f"reference config not found: {path}{where}")
    source = _BASE_REF.sub(lambda m: f"_base_.{m.group(2)}", path.read_text(encoding="utf-8"))
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from None
    evaluator = _Evaluator(path)
    base_values: dict[str, Any] = {}
    for stmt in tree.body:
        names = _assigned_names(stmt)
        if names == [BASE_KEY] and isinstance(stmt, ast.Assign):
            bases = evaluator.eval(stmt.value)
            base_values = _merge_bases(path, stmt, bases, stack)
            evaluator.base = base_values
            continue
        evaluator.exec(stmt)
    return merge_config(base_values, evaluator.values)


def _assigned_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return [stmt.targets[0].id]
    return []


def _merge_bases(path: Path, stmt: ast.stmt, bases: Any, stack: tuple[Path, ...]) -> dict[str, Any]:
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}:{stmt.lineno}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for rel in bases:
        base_path = (path.parent / rel).resolve()
        values = _read(base_path, (*stack, path))
        for key, value in values.items():
            if key in merged:
                raise ConfigError(
                    f"{path}:{stmt.lineno}: key '{key}' is set by two bases, {origin[key]} and {rel} "
                    "(the reference refuses duplicate keys among bases)"
                )
            merged[key] = value
            origin[key] = rel
    return merged


def merge_config(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` merged into ``base`` (neither is modified): dicts key by key unless the child's has
    ``_delete_=True``; any other value replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and not value.get(DELETE_KEY, False) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k not in (DELETE_KEY, BASE_KEY)}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_strip_delete(v) for v in value)
    return value


class _Evaluator:
    """Evaluates the statements of one file; ``values`` holds its top-level names in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.values: dict[str, Any] = {}
        self.base: dict[str, Any] = {}

    def error(self, node: ast.AST, what: str) -> ConfigError:
        line = getattr(node, "lineno", "?")
        return ConfigError(
            f"{self.path}:{line}: {what}; a reference config is read without executing it, and only "
            "literals, dict/list/tuple, names, arithmetic and string formatting are understood"
        )

    # -- statements -------------------------------------------------------------------------------

    def exec(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return  # a docstring or a bare literal
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names = ", ".join(a.name for a in stmt.names)
            module = f"from {stmt.module} " if isinstance(stmt, ast.ImportFrom) else ""
            why = "imports run code"
            if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("mmengine"):
                why += "; 3.x pure-Python configs (read_base) are not read, use the _base_ style of the file"
            raise self.error(stmt, f"'{module}import {names}' is not allowed ({why})")
        if isinstance(stmt, ast.Assign):
            value = self.eval(stmt.value)
            for target in stmt.targets:
                self._assign(target, value)
            return
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            op = _BINOPS.get(type(stmt.op))
            if op is None:
                raise self.error(stmt, f"operator {type(stmt.op).__name__} is not allowed")
            current = self._name(stmt.target)
            self.values[stmt.target.id] = self._apply(stmt, op, current, self.eval(stmt.value))
            return
        kind = type(stmt).__name__
        raise self.error(stmt, f"a {kind} statement is not allowed")

    def _assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.values[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                raise self.error(target, f"cannot unpack {value!r} into {len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self._assign(t, v)
        else:
            raise self.error(
                target, f"assignment to a {type(target).__name__} is not allowed (only to names)"
            )

    # -- expressions ------------------------------------------------------------------------------

    def eval(self, node: ast.expr) -> Any:
        method = getattr(self, f"_eval_{type(node).__name__}", None)
        if method is None:
            raise self.error(node, f"a {type(node).__name__} expression is not allowed")
        return method(node)

    def _eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _name(self, node: ast.Name) -> Any:
        if node.id in self.values:
            return self.values[node.id]
        if node.id in self.base:
            return self.base[node.id]
        if node.id == BASE_KEY:
            return _BaseRef(self.base)
        raise self.error(node, f"name '{node.id}' is not defined in this file or its bases")

    def _eval_Name(self, node: ast.Name) -> Any:
        value = self._name(node)
        if isinstance(value, _BaseRef) and node.id != BASE_KEY:
            raise self.error(node, f"name '{node.id}' cannot be used here")
        return value

    def _eval_Attribute(self, node: ast.Attribute) -> Any:
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id == BASE_KEY:
            if node.attr not in self.base:
                raise self.error(node, f"_base_.{node.attr}: no base of this file defines '{node.attr}'")
            return self.base[node.attr]
        if isinstance(owner, ast.Attribute):
            parent = self._eval_Attribute(owner)
            if isinstance(parent, dict) and node.attr in parent and _rooted_at_base(owner):
                return parent[node.attr]
            if _rooted_at_base(owner):
                raise self.error(node, f"_base_ reference: '{node.attr}' is not a key of the base's value")
        raise self.error(node, f"attribute access '.{node.attr}' is not allowed")

    def _eval_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values):
            if k is None:  # {**other}
                out.update(self._mapping(v))
            else:
                out[self._hashable(k)] = self.eval(v)
        return out

    def _hashable(self, node: ast.expr) -> Any:
        key = self.eval(node)
        try:
            hash(key)
        except TypeError:
            raise self.error(node, f"dict key {key!r} is not hashable") from None
        return key

    def _mapping(self, node: ast.expr) -> dict[Any, Any]:
        value = self.eval(node)
        if not isinstance(value, dict):
            raise self.error(node, f"'**' needs a dict, got {type(value).__name__}")
        return value

    def _eval_List(self, node: ast.List) -> list[Any]:
        return self._elements(node.elts)

    def _eval_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self._elements(node.elts))

    def _eval_Set(self, node: ast.Set) -> list[Any]:
        return self._elements(node.elts)

    def _elements(self, elts: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for e in elts:
            if isinstance(e, ast.Starred):
                value = self.eval(e.value)
                if not isinstance(value, (list, tuple)):
                    raise self.error(e, f"'*' needs a list or tuple, got {type(value).__name__}")
                out.extend(value)
            else:
                out.append(self.eval(e))
        return out

    def _eval_Call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format":
            template = self.eval(func.value)
            if not isinstance(template, str):
                raise self.error(node, "'.format' is only allowed on strings")
            args = self._elements(node.args)
            kwargs = {k.arg: self.eval(k.value) for k in node.keywords if k.arg is not None}
            try:
                return template.format(*args, **kwargs)
            except (IndexError, KeyError, ValueError) as exc:
                raise self.error(node, f"string formatting failed: {exc}") from None
        if not (isinstance(func, ast.Name) and func.id in _CONSTRUCTORS):
            called = ast.unparse(func) if hasattr(ast, "unparse") else type(func).__name__
            raise self.error(node, f"call of '{called}(...)' is not allowed (only dict, list and tuple)")
        if func.id == "dict":
            out: dict[Any, Any] = {}
            for a in node.args:
                out.update(self._mapping(a))
            for kw in node.keywords:
                if kw.arg is None:
                    out.update(self._mapping(kw.value))
                else:
                    out[kw.arg] = self.eval(kw.value)
            return out
        if node.keywords or len(node.args) > 1:
            raise self.error(node, f"{func.id}() takes at most one positional argument here")
        items = self.eval(node.args[0]) if node.args else []
        if isinstance(items, dict):
            items = list(items)
        if not isinstance(items, (list, tuple, str)):
            raise self.error(node, f"{func.id}() of a {type(items).__name__} is not allowed")
        return list(items) if func.id == "list" else tuple(items)

    def _apply(self, node: ast.AST, op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
        if isinstance(a, (dict, _BaseRef)) or isinstance(b, (dict, _BaseRef)):
            raise self.error(node, "arithmetic on dicts is not allowed")
        try:
            return op(a, b)
        except Exception as exc:  # TypeError, ZeroDivisionError, ...
            raise self.error(node, f"cannot compute {a!r} {type(node).__name__} {b!r}: {exc}") from None

    def _eval_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.error(node, f"operator {type(node.op).__name__} is not allowed")
        return self._apply(node, op, self.eval(node.left), self.eval(node.right))

    def _eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise self.error(node, f"operator {type(node.op).__name__} is not allowed")
        return op(self.eval(node.operand))

    def _eval_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.eval(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return all(values) and values[-1]
        return next((v for v in values if v), values[-1])

    def _eval_Compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.eval(comp)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _eval_IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def _eval_Subscript(self, node: ast.Subscript) -> Any:
        value = self.eval(node.value)
        index = self.eval(node.slice)
        try:
            return value[index]
        except (KeyError, IndexError, TypeError) as exc:
            raise self.error(node, f"cannot index {type(value).__name__} with {index!r}: {exc}") from None

    def _eval_Slice(self, node: ast.Slice) -> slice:
        def part(n: ast.expr | None) -> Any:
            return None if n is None else self.eval(n)

        return slice(part(node.lower), part(node.upper), part(node.step))

    def _eval_Index(self, node: Any) -> Any:  # Python 3.8 wraps subscripts
        return self.eval(node.value)

    def _eval_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            else:
                parts.append(self._eval_FormattedValue(v))
        return "".join(parts)

    def _eval_FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        spec = self._eval_JoinedStr(node.format_spec) if node.format_spec is not None else ""
        return format(value, spec)


def _rooted_at_base(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id == BASE_KEY
