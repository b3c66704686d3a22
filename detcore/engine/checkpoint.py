"""Checkpoint files and run state: atomic writes, the latest pointer, safe loading, weight loading with a
report, and what a run saves and restores to resume exactly (:class:`RunState`).

A detcore checkpoint is a dict with ``state_dict`` (model), ``optimizer``, ``scheduler``, ``meta``
(the training loop's position ``epoch``, ``iter``, ``inner_iter`` and ``epoch_rng``, ``config`` as
TOML text, ``detcore_version``, ``plugins`` {name: version}, ``seed``, ``time``), ``rng`` (a list of
per-rank RNG states) and ``grad_scaler`` (float16 AMP runs), plus whatever hooks add in
``before_save_checkpoint`` (e.g. ``ema_state_dict``). Everything in it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from detcore.engine import dist as dist_utils
from detcore.engine.seed import get_rng_state
from detcore.errors import CheckpointError

LATEST_FILE = "latest.pth"
_NUMBERED = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``<path>.tmp`` in the same directory, fsync, then rename over ``path``.

    A kill at any moment leaves either the previous file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_latest(work_dir: str | Path, checkpoint_name: str) -> None:
    """Point ``<work_dir>/latest.pth`` at ``checkpoint_name``: a small text file, written atomically."""
    path = Path(work_dir) / LATEST_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(checkpoint_name + "\n")
    os.replace(tmp, path)


def find_latest(work_dir: str | Path) -> Path | None:
    """The checkpoint ``latest.pth`` points at; else the newest ``iter_N``/``epoch_N`` file; else ``None``."""
    work_dir = Path(work_dir)
    pointer = work_dir / LATEST_FILE
    if pointer.is_file():
        target = _read_pointer(pointer)
        if target is not None and (work_dir / target).is_file():
            return work_dir / target
        if target is None:  # latest.pth is itself a checkpoint (copied by another tool)
            return pointer
    numbered = []
    for p in work_dir.glob("*.pth"):
        m = _NUMBERED.match(p.name)
        if m:
            numbered.append((p.stat().st_mtime, int(m.group(2)), p))
    return max(numbered)[2] if numbered else None


def _read_pointer(pointer: Path) -> str | None:
    with open(pointer, "rb") as f:
        head = f.read(512)
    if b"\0" in head or pointer.stat().st_size > 512:
        return None
    return head.decode("utf-8", "replace").strip() or None


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with an error that names the file on failure."""
    from detcore.migration.checkpoint_upgrade import pickle_refusal

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        if "unsupported global" not in str(exc).lower():  # no refused object: truncated, not a torch file
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
            unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            first = [unpickler.group(1)] if unpickler else text.strip().splitlines()
            raise CheckpointError(
                f"checkpoint '{path}' is not a readable torch file ({type(exc).__name__}"
                + (f": {first[0]}" if first else "") + ")"
            ) from exc
        raise CheckpointError(pickle_refusal(path, exc)) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(obj).__name__}, expected a dict")
    return dict(obj)


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a loaded file: its ``state_dict`` (or ``model``) entry, or the file itself.

    A ``module.`` prefix left by (Distributed)DataParallel is removed.
    """
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            state = checkpoint[key]
            break
    else:
        state = checkpoint
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)][:5]
        raise RuntimeError(f"checkpoint has no 'state_dict' entry of tensors (non-tensor entries: {bad})")
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    return dict(state)


@dataclass
class LoadReport:
    """What :func:`load_weights` did: keys missing from the file, unexpected keys, shape mismatches."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def format(self) -> str:
        if self.clean:
            return "all keys matched"
        lines = []
        if self.shape_mismatch:
            lines.append("shape mismatch (kept the model's initial values):")
            lines += [f"  {k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in self.shape_mismatch]
        if self.missing:
            lines.append(f"missing in the checkpoint ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(
                f"unexpected in the checkpoint ({len(self.unexpected)}): {', '.join(self.unexpected)}"
            )
            from detcore.migration.checkpoint_upgrade import old_layout_hint

            hint = old_layout_hint(self.unexpected, self.missing)
            if hint:
                lines.append(f"hint: {hint}")
        return "\n".join(lines)


def load_weights(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = False
) -> LoadReport:
    """Load ``state_dict`` into ``model``; entries whose shape differs are skipped and reported.

    With ``strict`` any mismatch raises ``RuntimeError`` with the report.
    """
    own = model.state_dict()
    report = LoadReport()
    usable: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.shape_mismatch.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            usable[key] = value
    report.missing = [k for k in own if k not in state_dict]
    if strict and not report.clean:
        raise RuntimeError(f"weights do not match the model:\n{report.format()}")
    model.load_state_dict(usable, strict=False)
    return report


def prune_checkpoints(work_dir: str | Path, prefix: str, max_keep: int, keep: set[str] | None = None) -> None:
    """Delete the oldest ``<prefix>_N.pth`` files so that at most ``max_keep`` remain (``keep`` excepted)."""
    if max_keep is None or max_keep <= 0:
        return
    work_dir = Path(work_dir)
    found = []
    for p in work_dir.glob(f"{prefix}_*.pth"):
        m = _NUMBERED.match(p.name)
        if m and m.group(1) == prefix and p.name not in (keep or set()):
            found.append((int(m.group(2)), p))
    found.sort()
    for _, p in found[: max(0, len(found) - max_keep)]:
        p.unlink(missing_ok=True)


def resolve_checkpoint_path(source: str | Path) -> Path:
    """A local path for a checkpoint path or URL (URLs are downloaded to the cache, checksum-checked).

    A work dir's ``latest.pth`` pointer resolves to the checkpoint it names.
    """
    from detcore.engine.download import is_url

    source = str(source)
    if not is_url(source):
        path = Path(source)
        if path.name == LATEST_FILE and path.is_file():
            return find_latest(path.parent) or path
        return path
    try:
        from detcore.models.checkpoint_io import load_url_to_cache
    except ImportError:
        from detcore.engine.download import download_to_cache as load_url_to_cache
    cache = os.environ.get("DETCORE_CACHE")
    return Path(load_url_to_cache(source, cache_dir=Path(cache) / "checkpoints" if cache else None))


@dataclass
class RunState:
    """The objects whose state a checkpoint holds so that a resumed run continues bit for bit.

    ``model`` (unwrapped), ``optimizer``, ``scheduler`` and ``grad_scaler`` save through
    ``state_dict()`` / ``load_state_dict()``; the training ``loop`` through ``state_dict()`` (its
    position and RNG states, stored in ``meta``) and ``load_state_dict(meta, rng)``. Each process's
    RNG states are gathered into ``rng``, so every rank resumes its own streams. Any part may be
    ``None`` (not saved, not restored).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    grad_scaler: Any = None
    loop: Any = None

    def to_checkpoint(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint dict: every part's state, ``meta`` after the loop's entries, all ranks' RNG states.

        A collective call in distributed runs (the RNG states are gathered): every rank must make it.
        """
        checkpoint: dict[str, Any] = {
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "meta": {**(self.loop.state_dict() if self.loop is not None else {}), **meta},
            "rng": dist_utils.all_gather_object(get_rng_state()),
        }
        if self.grad_scaler is not None:
            checkpoint["grad_scaler"] = self.grad_scaler.state_dict()
        return checkpoint

    def restore(self, checkpoint: Mapping[str, Any], rank: int = 0, world_size: int = 1) -> list[str]:
        """Load every part from ``checkpoint`` (weights strictly); returns warnings about what is inexact.

        The loop gets ``meta`` and the RNG states saved by process ``rank`` (process 0's if the
        checkpoint was written by fewer processes).
        """
        warnings: list[str] = []
        load_weights(self.model, extract_state_dict(checkpoint), strict=True)
        if self.optimizer is not None and checkpoint.get("optimizer"):
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.grad_scaler is not None and "grad_scaler" in checkpoint:
            self.grad_scaler.load_state_dict(checkpoint["grad_scaler"])
        rng_states = checkpoint.get("rng") or []
        rng = None
        if rng_states:
            if len(rng_states) != world_size:
                warnings.append(
                    f"the checkpoint was written by {len(rng_states)} process(es), this run has "
                    f"{world_size}: RNG states are not restored exactly"
                )
            rng = rng_states[rank] if rank < len(rng_states) else rng_states[0]
        if self.loop is not None:
            self.loop.load_state_dict(checkpoint.get("meta", {}), rng)
        return warnings
