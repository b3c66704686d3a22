"""Exceptions a user can act on: each message says what is wrong, where, and what to do."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterable, Iterator


class DetcoreError(Exception):
    """Base class of detcore's own errors."""


class PluginError(DetcoreError):
    """A plugin is missing, blocked, broken or of the wrong version."""


class ComponentError(DetcoreError):
    """A component name is unknown or ambiguous."""


class ConfigError(DetcoreError):
    """A config file or override is invalid. The message names the file and the key path."""


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name`` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def located(exc: BaseException, where: str) -> BaseException:
    """Attach ``where`` (a config file and key path, an image id and file, a checkpoint path) to ``exc``
    and return it, for ``raise located(exc, where)`` in the layer that knows the place.

    The exception keeps its type and traceback; the CLI's error boundary prints
    ``detcore: error: <where>: <what>``. An inner location already attached is kept (it is the more
    precise one), so layers can wrap freely.
    """
    if not getattr(exc, "detcore_where", None):
        try:
            exc.detcore_where = where  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__: keep it unlocated
            pass
    return exc


class CheckpointError(DetcoreError, RuntimeError):
    """A checkpoint cannot be read (refused by the weights-only loader, not a dict, no weights)."""


# -- config locations for errors raised while building components ---------------------------------------

_SOURCES: ContextVar[Callable[[str], str] | None] = ContextVar("detcore_config_sources", default=None)


@contextmanager
def config_sources(source_of: Callable[[str], str] | None) -> Iterator[None]:
    """While active, :func:`config_place` names the file that set a key path (``Config.source_of``).
    The runner and ``init_detector`` wrap their component builds in it."""
    token = _SOURCES.set(source_of)
    try:
        yield
    finally:
        _SOURCES.reset(token)


def config_place(key_path: str) -> str:
    """``"<file>: <key path>"`` for a key path of the config being built (just the key path outside
    :func:`config_sources`, or when ``key_path`` already names its file)."""
    source_of = _SOURCES.get()
    if source_of is None or not key_path or ": " in key_path:
        return key_path
    return f"{source_of(key_path)}: {key_path}"


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its location (if a layer attached one, see :func:`located`), the type
    unless it is detcore's own error, and the message (a ``KeyError``'s key as ``missing key 'k'``)."""
    where = getattr(exc, "detcore_where", None)
    message = str(exc) or repr(exc)
    if "\nOriginal Traceback" in message:  # re-raised from a DataLoader worker: the original's last line
        last = message.rstrip().splitlines()[-1]
        message = last.split(": ", 1)[1] if last.startswith(f"{type(exc).__module__}.") else last
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        arg = exc.args[0]  # a sentence (``KeyError("invalid depth 19 ...")``) reads as it is
        message = arg if isinstance(arg, str) and " " in arg else f"missing key {arg!r}"
    if not isinstance(exc, DetcoreError):
        message = f"{type(exc).__name__}: {message}"
    return f"{where}: {message}" if where else message


class ConfigWarning(UserWarning):
    """Something in a config that runs but is probably not meant (a schedule step past the end)."""
