"""Reading weights: local files or URLs (downloaded once into a cache), state-dict extraction, loading.

Checkpoints are read with ``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain
containers only, never code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detcore.errors import CheckpointError

logger = logging.getLogger(__name__)

#: torchvision model names (``torchvision://resnet50``) -> their download addresses
TORCHVISION_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    "resnext50_32x4d": "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")


def default_cache_dir() -> Path:
    """``$DETCORE_CACHE`` or ``~/.cache/detcore/checkpoints``."""
    root = os.environ.get("DETCORE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "detcore")
    return Path(root) / "checkpoints"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_url_to_cache(
    url: str, cache_dir: str | os.PathLike | None = None, sha256: str | None = None
) -> Path:
    """Download ``url`` into ``cache_dir`` once and return the local path.

    The file is written to a temporary name in the cache directory and renamed when complete, so an
    interrupted download never leaves a partial file under the final name. With ``sha256`` the file's
    checksum must match (a full hex digest, or a prefix of at least 8 characters), else ``ValueError``
    and nothing is kept. A cached file is checked again on every call.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(urllib.parse.urlparse(url).path) or hashlib.sha256(url.encode()).hexdigest()[:16]
    target = cache / name
    expected = sha256.lower() if sha256 else None
    if expected is not None and len(expected) < 8:
        raise ValueError(f"load_url_to_cache: sha256 prefix '{sha256}' is too short (at least 8 hex digits)")

    def _check(path: Path) -> None:
        if expected is None:
            return
        actual = sha256_of(path)
        if not actual.startswith(expected):
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {expected}..., got {actual}; "
                f"the download is corrupt or the URL serves another file"
            )

    if target.exists():
        _check(target)
        return target
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:  # noqa: S310
            shutil.copyfileobj(response, out)
        _check(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s to %s", url, target)
    return target


def resolve_checkpoint(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Local path of a checkpoint given as a path, ``file://``/``http(s)://`` URL or ``torchvision://name``."""
    source = str(source)
    if source.startswith("torchvision://"):
        model = source[len("torchvision://") :]
        if model not in TORCHVISION_URLS:
            raise KeyError(
                f"unknown torchvision model '{model}'; known: {', '.join(sorted(TORCHVISION_URLS))}"
            )
        source = TORCHVISION_URLS[model]
    if re.match(r"^(https?|file)://", source):
        url_hash = _HASH_IN_NAME.search(os.path.basename(urllib.parse.urlparse(source).path))
        # files named like torchvision's (name-<sha256 prefix>.pth) are checked against that prefix
        sha = url_hash.group(1) if url_hash and source.startswith("https://download.pytorch.org") else None
        return load_url_to_cache(source, cache_dir, sha256=sha)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file '{source}' does not exist")
    return path


def state_dict_from(
    source: str | os.PathLike | Mapping[str, Any], map_location: Any = "cpu"
) -> dict[str, Any]:
    """The state dict of a checkpoint (path, URL or an already-loaded dict).

    A ``state_dict`` or ``model`` wrapper is unwrapped and a leading ``module.`` (from
    ``DistributedDataParallel``) is stripped from every key.
    """
    if isinstance(source, Mapping):
        ckpt: Any = source
    else:
        path = resolve_checkpoint(source)
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file and the way out named
            from detcore.migration.checkpoint_upgrade import pickle_refusal

            raise CheckpointError(pickle_refusal(path, exc)) from None
    if not isinstance(ckpt, Mapping):
        raise TypeError(f"checkpoint {source!r} holds a {type(ckpt).__name__}, not a dict of tensors")
    for wrapper in ("state_dict", "model"):
        if wrapper in ckpt and isinstance(ckpt[wrapper], Mapping):
            ckpt = ckpt[wrapper]
            break
    out: dict[str, Any] = OrderedDict()
    for key, value in ckpt.items():
        out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def load_state_dict(
    module: nn.Module, state_dict: Mapping[str, Any], strict: bool = False, source: str = "state dict"
) -> tuple[list[str], list[str]]:
    """Load ``state_dict`` into ``module``; returns ``(missing_keys, unexpected_keys)``.

    Shape mismatches are always errors (naming every mismatched key). With ``strict`` missing and
    unexpected keys are errors too; otherwise they are logged.
    """
    own = module.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    if mismatched:
        raise RuntimeError(
            f"size mismatch loading {source} into {type(module).__name__}: " + "; ".join(mismatched)
        )
    result = module.load_state_dict(dict(state_dict), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise RuntimeError(
            f"loading {source} into {type(module).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}"
        )
    if missing:
        logger.warning("%s: missing keys in source: %s", source, ", ".join(missing))
    if unexpected:
        logger.warning("%s: unexpected keys in source: %s", source, ", ".join(unexpected))
    return missing, unexpected


def load_checkpoint(
    module: nn.Module, source: str | os.PathLike, map_location: Any = "cpu", strict: bool = False
) -> tuple[list[str], list[str]]:
    """Load a checkpoint file or URL into ``module``; returns ``(missing_keys, unexpected_keys)``."""
    return load_state_dict(module, state_dict_from(source, map_location), strict=strict, source=str(source))
