"""Upgrade reference checkpoints of older layouts to the current one (the reference 2.x / detcore layout).

What :func:`upgrade_state_dict` changes, as the reference's upgrade tools do:

- 1.x two-stage detectors kept their box/mask heads at the top level: ``bbox_head.*`` ->
  ``roi_head.bbox_head.*`` (also ``mask_head``, ``semantic_head``, ``grid_head``, ``mask_iou_head``)
  when the checkpoint has an ``rpn_head``.
- 1.x softmax classifiers put the background at index 0, 2.x puts it last: the class channels of
  ``fc_cls``, ``conv_cls``, ``fcos_cls``, ``fovea_cls`` and SSD's ``cls_convs`` move the first class
  of every anchor to the end (weights and biases alike). Sigmoid heads (no background channel, e.g.
  ``retina_cls``) are left alone; the reference's tool rotates their bias by one, which we do not.
  1.x class-specific ``fc_reg`` and mask ``conv_logits`` lose their background rows.
- RetinaNet of mmdet <= 0.5.3 used bare convs: ``bbox_head.cls_convs.N.weight`` ->
  ``bbox_head.cls_convs.N.conv.weight`` (and ``reg_convs``).
- SSD before 2.14 kept its extra layers and L2 norm in the backbone and its head convs unwrapped:
  ``backbone.extra.K.*`` -> ``neck.extra_layers.{K // 2}.{K % 2}.conv.*``, ``backbone.l2_norm.weight``
  -> ``neck.l2_norm.weight``, ``bbox_head.cls_convs.N.*`` -> ``bbox_head.cls_convs.N.0.*`` (and
  ``reg_convs``).

Checkpoints are read weights-only; numpy scalars and arrays in the metadata (common in the reference's
files) are allowed, any other pickled object is refused with a message saying how to convert the file.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

_TWO_STAGE_HEADS = ("bbox_head.", "mask_head.", "semantic_head.", "grid_head.", "mask_iou_head.")
_SOFTMAX_CLS = re.compile(r"(^|\.)(fc_cls|conv_cls|fcos_cls|fovea_cls)\.(weight|bias)$")
_SSD_CLS = re.compile(r"^bbox_head\.cls_convs\.\d+(\.0)?\.(weight|bias)$")
_SSD_REG = re.compile(r"^bbox_head\.reg_convs\.\d+(\.0)?\.(weight|bias)$")
_OLD_SSD_HEAD = re.compile(r"^(bbox_head\.(?:cls|reg)_convs\.\d+)\.(weight|bias)$")
_OLD_SSD_EXTRA = re.compile(r"^backbone\.extra\.(\d+)\.(weight|bias)$")
_OLD_RETINA_CONV = re.compile(r"^(bbox_head\.(?:cls|reg)_convs\.\d+)\.(weight|bias)$")


class CheckpointFormatError(RuntimeError):
    """A checkpoint that cannot be read weights-only, or whose layout cannot be upgraded."""


@dataclass
class UpgradeReport:
    """What :func:`upgrade_state_dict` did, one line per change, and the layout it found."""

    layout: str
    changes: list[str] = field(default_factory=list)

    def format(self) -> str:
        return f"{self.layout} layout; " + ("; ".join(self.changes) if self.changes else "nothing to change")


def numpy_safe_globals() -> list[Any]:
    """The numpy types the reference's checkpoints hold in their metadata (no code runs to rebuild them)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    found = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    found += [getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", object)) if n.endswith("DType")]
    return found


def read_checkpoint(path: str | Path, allow_numpy: bool = True) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` (numpy metadata allowed with ``allow_numpy``).

    A file that needs other pickled objects raises :class:`CheckpointFormatError` naming them and
    saying how to convert the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        if allow_numpy:
            with torch.serialization.safe_globals(numpy_safe_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file and the way out named
        raise CheckpointFormatError(pickle_refusal(path, exc)) from None
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"checkpoint '{path}' holds a {type(obj).__name__}, expected a dict")
    return dict(obj)


def pickle_refusal(path: str | Path, exc: BaseException) -> str:
    """The message for a checkpoint that ``torch.load(weights_only=True)`` refuses."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint, or an older torch
        names = []
    what = f" (it pickles {', '.join(names[:5])})" if names else f" ({type(exc).__name__})"
    return (
        f"checkpoint '{path}' cannot be loaded weights-only{what}; detcore never unpickles objects. "
        f"Numpy values in its metadata are read by `detcore checkpoint upgrade {path} OUT.pth`. Otherwise, "
        "if you trust the file, convert it once in Python: "
        f"`c = torch.load('{path}', weights_only=False); "
        "torch.save({'state_dict': c['state_dict']}, 'OUT.pth')`"
    )


def detect_layout(keys: list[str]) -> str:
    """``"1.x two-stage"``, ``"pre-2.14 SSD"``, ``"0.5 RetinaNet"`` or ``"current"`` from state-dict keys."""
    if any(k.startswith("rpn_head.") for k in keys) and any(k.startswith(_TWO_STAGE_HEADS) for k in keys):
        return "1.x two-stage"
    if any(_OLD_SSD_EXTRA.match(k) or k == "backbone.l2_norm.weight" for k in keys):
        return "pre-2.14 SSD"
    retina = any(k.startswith("bbox_head.retina_cls.") for k in keys)
    if retina and any(_OLD_RETINA_CONV.match(k) for k in keys):
        return "0.5 RetinaNet"
    return "current"


def old_layout_hint(unexpected: list[str], missing: list[str] | tuple[str, ...] = ()) -> str | None:
    """A suggestion to run ``detcore checkpoint upgrade`` when the unexpected keys of a load are those of
    an old layout (renamed, they are keys the model misses), or look like one on their own."""
    wanted = set(missing)
    found = None
    for layout in ("1.x two-stage", "pre-2.14 SSD", "0.5 RetinaNet"):
        renamed = (_rename(k, layout) for k in unexpected)
        if any(new != old and new in wanted for old, new in zip(unexpected, renamed)):
            found = layout
            break
    if found is None and detect_layout(list(unexpected)) != "current":
        found = detect_layout(list(unexpected))
    if found is None:
        return None
    return (
        f"the checkpoint's keys look like the reference's {found} layout: convert it with "
        "`detcore checkpoint upgrade IN OUT` and load OUT"
    )


def upgrade_state_dict(
    state: Mapping[str, torch.Tensor],
    num_classes: int | None = None,
    shift_background: bool | None = None,
) -> tuple[dict[str, torch.Tensor], UpgradeReport]:
    """The state dict in the current layout, and what changed.

    Args:
        state: the checkpoint's weights.
        num_classes: foreground classes of the softmax heads; inferred from ``fc_cls`` or SSD's heads
            when not given.
        shift_background: move the softmax background class from index 0 to the end; default: when
            the layout is a 1.x one (two-stage heads at the top level). A pre-2.14 SSD of 2.x already
            has the background last: pass ``True`` for a 1.x SSD.
    """
    keys = list(state)
    layout = detect_layout(keys)
    report = UpgradeReport(layout)
    if shift_background is None:
        shift_background = layout == "1.x two-stage"
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        new_key = _rename(key, layout)
        if new_key != key:
            report.changes.append(f"{key} -> {new_key}")
        out[new_key] = value
    softmax = [k for k in out if _SOFTMAX_CLS.search(k) or _SSD_CLS.match(k)]
    if shift_background and softmax:
        k = _classes_with_background(out, num_classes)
        for key in list(out):
            out[key], change = _shift(key, out[key], k)
            if change:
                report.changes.append(change)
    return out, report


def _rename(key: str, layout: str) -> str:
    if layout == "1.x two-stage" and key.startswith(_TWO_STAGE_HEADS):
        return "roi_head." + key
    if layout == "pre-2.14 SSD":
        m = _OLD_SSD_EXTRA.match(key)
        if m:
            index = int(m.group(1))
            return f"neck.extra_layers.{index // 2}.{index % 2}.conv.{m.group(2)}"
        if key == "backbone.l2_norm.weight":
            return "neck.l2_norm.weight"
        m = _OLD_SSD_HEAD.match(key)
        if m:
            return f"{m.group(1)}.0.{m.group(2)}"
    if layout == "0.5 RetinaNet":
        m = _OLD_RETINA_CONV.match(key)
        if m:
            return f"{m.group(1)}.conv.{m.group(2)}"
    return key


def _classes_with_background(state: Mapping[str, torch.Tensor], num_classes: int | None) -> int:
    """Classes including the background channel of the softmax heads."""
    if num_classes is not None:
        return int(num_classes) + 1
    for key, value in state.items():
        if key.endswith("fc_cls.weight"):
            return int(value.shape[0])
    cls = [v for k, v in state.items() if _SSD_CLS.match(k) and k.endswith("weight")]
    reg = [v for k, v in state.items() if _SSD_REG.match(k) and k.endswith("weight")]
    if cls and len(cls) == len(reg):  # SSD: cls channels = anchors * classes, reg = anchors * 4
        counts = {int(c.shape[0]) * 4 // int(r.shape[0]) for c, r in zip(cls, reg)}
        if len(counts) == 1:
            return counts.pop()
    raise CheckpointFormatError(
        "cannot tell the number of classes of the softmax heads from the checkpoint; give --num-classes"
    )


def _shift(key: str, value: torch.Tensor, k: int) -> tuple[torch.Tensor, str | None]:
    """Move the background class (index 0 of every group of ``k`` channels) to the end of its group."""
    if value.dim() == 0:
        return value, None
    channels = int(value.shape[0])
    if _SOFTMAX_CLS.search(key) or _SSD_CLS.match(key):
        if channels % k:
            return value, None  # a sigmoid classifier: no background channel
        grouped = value.reshape(channels // k, k, *value.shape[1:])
        moved = torch.cat([grouped[:, 1:], grouped[:, :1]], dim=1).reshape(value.shape)
        return moved, f"{key}: background class moved from the first to the last channel"
    if re.search(r"(^|\.)fc_reg\.(weight|bias)$", key) and channels == 4 * k:
        return value[4:].clone(), f"{key}: background box regression rows dropped"
    if re.search(r"(^|\.)conv_logits\.(weight|bias)$", key) and channels == k:
        return value[1:].clone(), f"{key}: background mask channel dropped"
    return value, None


def upgrade_checkpoint(
    src: str | Path, dst: str | Path, num_classes: int | None = None, shift_background: bool | None = None
) -> UpgradeReport:
    """Read ``src``, upgrade its weights and write ``dst`` (``state_dict`` and plain ``meta`` only)."""
    ckpt = read_checkpoint(src)
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFormatError(f"checkpoint '{src}' has no 'state_dict' of tensors")
    if shift_background is None:
        version = str((ckpt.get("meta") or {}).get("mmdet_version", ""))
        shift_background = True if re.match(r"^[01]\.", version) else None
    new_state, report = upgrade_state_dict(state, num_classes, shift_background)
    meta = plain(ckpt.get("meta") or {})
    meta["detcore_upgrade"] = report.format()
    torch.save({"state_dict": new_state, "meta": meta}, dst)
    return report


def plain(value: Any) -> Any:
    """Metadata with numpy values as Python ones and other objects dropped (loadable weights-only)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if _is_plain(v)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value if _is_plain(v)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _is_plain(value: Any) -> bool:
    kinds = (str, int, float, bool, type(None), Mapping, list, tuple, np.generic, np.ndarray)
    return isinstance(value, kinds)
