"""``Instances``: a set of objects in one image, each field holding one entry per object.

Ground truth and predictions both travel as ``Instances``. Conventional fields:

- ``bboxes``: ``Tensor[N, 4]`` float, ``(x1, y1, x2, y2)`` in pixels;
- ``labels``: ``Tensor[N]`` long, contiguous class indices ``0 .. num_classes - 1``;
- ``scores``: ``Tensor[N]`` float (predictions);
- ``masks``: ``Tensor[N, H, W]`` bool, or a mask structure from :mod:`detcore.structures.masks`.

Every field must have the same first-dimension length. Image-level data (``ori_shape``,
``img_shape``, ``scale_factor``, ``flip``, ``pad_shape``, ...) lives in the separate ``metainfo``.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch


class Instances:
    """Fields of equal length, one entry per object: ``Instances(metainfo=None, bboxes=..., labels=...)``.

    Fields are read and set as attributes (``inst.bboxes``) or with :meth:`get` / :meth:`set`;
    ``inst[index]`` (an int, slice, bool mask or long tensor) selects objects of every field;
    ``len(inst)`` is the number of objects.
    """

    def __init__(self, metainfo: dict[str, Any] | None = None, **fields: Any) -> None:
        self.metainfo: dict[str, Any] = dict(metainfo or {})
        self._fields: dict[str, Any] = {}
        for name, value in fields.items():
            self.set(name, value)

    # -- fields ------------------------------------------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        if len(self._fields) and len(value) != len(self):
            raise ValueError(
                f"Instances.{name} has {len(value)} entries but the other fields have {len(self)}"
            )
        self._fields[name] = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "metainfo":
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(f"Instances has no field '{name}' (fields: {sorted(fields)})")

    def has(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str, default: Any = None) -> Any:
        return self._fields.get(name, default)

    def remove(self, name: str) -> None:
        del self._fields[name]

    def fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def keys(self) -> list[str]:
        return list(self._fields)

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        return 0

    def __iter__(self) -> Iterator[Any]:
        raise TypeError("Instances is not iterable; index it or read its fields")

    # -- transforms --------------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Instances:
        """Select objects: an int, a slice, a bool mask or a long index tensor."""
        if isinstance(index, int):
            index = slice(index, None if index == -1 else index + 1)
        out = Instances(self.metainfo)
        for name, value in self._fields.items():
            if isinstance(value, torch.Tensor):
                out._fields[name] = value[index]
            elif isinstance(value, list):
                out._fields[name] = _index_list(value, index)
            else:
                out._fields[name] = value[index]
        return out

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        out = Instances(self.metainfo)
        for name, value in self._fields.items():
            out._fields[name] = value.to(*args, **kwargs) if hasattr(value, "to") else value
        return out

    def numpy(self) -> dict[str, Any]:
        """Fields as NumPy arrays (tensors converted), for writing results."""
        return {
            k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in self._fields.items()
        }

    @staticmethod
    def cat(items: list[Instances]) -> Instances:
        """Concatenate instances of the same image (same fields)."""
        if not items:
            return Instances()
        out = Instances(items[0].metainfo)
        for name in items[0].keys():
            values = [it.get(name) for it in items]
            if isinstance(values[0], torch.Tensor):
                out._fields[name] = torch.cat(values, dim=0)
            elif isinstance(values[0], list):
                out._fields[name] = [x for v in values for x in v]
            elif hasattr(type(values[0]), "cat"):
                out._fields[name] = type(values[0]).cat(values)
            else:
                raise TypeError(f"Instances.cat: cannot concatenate field '{name}' of type {type(values[0])}")
        return out

    def __repr__(self) -> str:
        desc = ", ".join(
            f"{k}={tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}"
            for k, v in self._fields.items()
        )
        return f"Instances(num={len(self)}, {desc})"


def _index_list(values: list, index: Any) -> list:
    if isinstance(index, slice):
        return values[index]
    if isinstance(index, torch.Tensor):
        if index.dtype == torch.bool:
            return [v for v, keep in zip(values, index.tolist()) if keep]
        return [values[i] for i in index.tolist()]
    return [values[i] for i in index]
