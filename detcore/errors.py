"""Exceptions a user can act on: each message says what is wrong, where, and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


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
