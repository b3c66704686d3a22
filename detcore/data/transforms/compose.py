"""``Compose``: a pipeline built from a list of transform tables."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


class Compose:
    """Apply transforms in order; a transform returning ``None`` stops the pipeline (returns ``None``).

    ``transforms``: transform tables ``{"type": name, ...}`` (built through the registry kind
    "transform") or already-built callables.
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any] | Callable] | None) -> None:
        from detcore.registry import build

        self.transforms: list[Callable] = []
        for i, t in enumerate(transforms or []):
            if isinstance(t, Mapping):
                self.transforms.append(build("transform", t, where=f"pipeline[{i}]"))
            elif callable(t):
                self.transforms.append(t)
            else:
                raise TypeError(
                    f"pipeline[{i}]: a transform must be a table or a callable, got {type(t).__name__}"
                )

    def __call__(self, results: Any) -> Any:
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"
