"""The reference implementation's checkpoint layouts, for tests that check a model's state dict.

The reference implementation's checkpoint layouts live in ``shared/reference/checkpoint-keys/`` beside
the repository checkout (one ``<config name>.txt`` per standard config: a first line with the
parameter count, then one ``name (shape)`` line per state-dict entry). ``DETCORE_REFERENCE_KEYS``
points elsewhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import torch

KEYS_ENV = "DETCORE_REFERENCE_KEYS"
_LINE = re.compile(r"^(\S+) \(([\d, ]*)\)$")
_COUNT = re.compile(r"(\d+) parameters")


class ReferenceKeys(NamedTuple):
    param_count: int
    entries: list[tuple[str, tuple[int, ...]]]  # (state-dict key, shape) in the reference's order


def reference_keys_dir() -> Path | None:
    """The checkpoint-keys folder: ``$DETCORE_REFERENCE_KEYS``, else ``shared/reference/checkpoint-keys``
    found beside the checkout holding the working directory or this package."""
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "reference" / "checkpoint-keys"
            if candidate.is_dir():
                return candidate
    return None


def read_reference_keys(name: str) -> ReferenceKeys:
    """Parse ``<name>.txt``; ``FileNotFoundError`` when the folder or file is absent."""
    folder = reference_keys_dir()
    path = folder / f"{name}.txt" if folder else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"reference checkpoint-keys file '{name}.txt' not found (set {KEYS_ENV})")
    lines = path.read_text().splitlines()
    count = _COUNT.search(lines[0])
    if count is None:
        raise ValueError(f"{path}:1: no parameter count in {lines[0]!r}")
    entries = []
    for number, line in enumerate(lines[1:], 2):
        m = _LINE.match(line.strip())
        if m is None:
            raise ValueError(f"{path}:{number}: expected 'name (shape)', got {line!r}")
        entries.append((m.group(1), tuple(int(s) for s in m.group(2).replace(",", " ").split())))
    return ReferenceKeys(int(count.group(1)), entries)


def reference_keys_or_skip(name: str) -> ReferenceKeys:
    """:func:`read_reference_keys` inside a pytest test: skip (with the reason) when the file is absent."""
    import pytest

    try:
        return read_reference_keys(name)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def state_dict_layout(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of every state-dict entry, in order (works on the meta device)."""
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def write_reference_checkpoint(
    name: str, path: str | Path, num_classes: int = 80, meta: dict | None = None
) -> dict[str, torch.Tensor]:
    """Write a checkpoint in the reference's file format, ``{"meta": {"CLASSES": ...}, "state_dict":
    ...}``, with the layout of config ``name`` (:func:`reference_keys_or_skip`: skips when absent) and
    seeded random values in ``[0.5, 1.5)`` (positive, so ``running_var`` entries are valid;
    ``num_batches_tracked`` entries are 7). ``meta`` adds entries to the meta dict. Returns the state."""
    import torch

    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in reference_keys_or_skip(name).entries:
        counter = key.endswith("num_batches_tracked")
        state[key] = torch.tensor(7) if counter else torch.rand(shape, generator=gen) + 0.5
    classes = [f"c{i}" for i in range(num_classes)]
    torch.save({"meta": {"CLASSES": classes, **(meta or {})}, "state_dict": state}, path)
    return state


def check_reference_checkpoint_loads(config: str | Path, name: str, folder: str | Path) -> torch.nn.Module:
    """Assert that a reference-format checkpoint of ``name`` (:func:`write_reference_checkpoint`, into
    ``folder``) loads through ``detcore.api.init_detector(config, checkpoint)``: a clean load report
    (nothing missing, unexpected or of another shape), the model in eval mode, and every state-dict
    entry equal to the written one. Returns the model."""
    import torch

    from detcore.api import init_detector

    path = Path(folder) / f"{name}_reference.pth"
    state = write_reference_checkpoint(name, path)
    model = init_detector(str(config), str(path), device="cpu")
    assert model.load_report.clean, model.load_report.format()
    assert not model.training, "init_detector must return the model in eval mode"
    loaded = model.state_dict()
    assert list(loaded) == list(state), "the loaded state dict's keys differ from the reference's"
    differ = [key for key, value in state.items() if not torch.equal(loaded[key], value)]
    assert not differ, f"{len(differ)} entries differ from the checkpoint, first: {differ[:3]}"
    return model


def first_differences(got: list, expected: list, n: int = 5) -> list:
    """The first ``n`` entries of two layouts that differ (by position), or the longer one's surplus."""
    diffs = [(g, e) for g, e in zip(got, expected) if g != e][:n]
    if not diffs and len(got) != len(expected):
        longer = got if len(got) > len(expected) else expected
        diffs = [("surplus", longer[min(len(got), len(expected)) :][:n])]
    return diffs


def check_reference_layout(model_table: Mapping[str, Any], name: str) -> int:
    """Assert that the detector built from ``model_table`` (on the meta device) has the state-dict
    entries of the reference's ``name`` (:func:`reference_keys_or_skip`: skips when absent): the keys
    in order, then their shapes, then the parameter count. Returns the parameter count."""
    import torch

    import detcore

    keys = reference_keys_or_skip(name)
    with torch.device("meta"):
        model = detcore.build("detector", model_table)
    got = state_dict_layout(model)
    assert [k for k, _ in got] == [k for k, _ in keys.entries], first_differences(got, keys.entries)
    assert got == keys.entries, first_differences(got, keys.entries)
    count = sum(p.numel() for p in model.parameters())
    assert count == keys.param_count, f"{count} parameters, the reference's {name} has {keys.param_count}"
    return count
