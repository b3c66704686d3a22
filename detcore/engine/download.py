"""Fetch a checkpoint URL into a local cache, checking its SHA-256 when one is known.

The expected hash comes from the ``sha256`` argument or, as in torch.hub's convention, from a
file name ending in ``-<first 8+ hex digits of the sha256>.pth``. ``file://`` URLs work like remote
ones (that is how the tests exercise it).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")


def default_cache_dir() -> Path:
    return Path(os.environ.get("DETCORE_CACHE", Path.home() / ".cache" / "detcore")) / "checkpoints"


def is_url(path: str) -> bool:
    return urllib.parse.urlparse(str(path)).scheme in ("http", "https", "file", "ftp")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_to_cache(url: str, cache_dir: str | Path | None = None, sha256: str | None = None) -> Path:
    """The local path of ``url`` in ``cache_dir``, downloaded on first use.

    Raises ``RuntimeError`` when the file's SHA-256 does not start with the expected hash (the
    partial download is removed; a cached file with a wrong hash is fetched again).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint.pth"
    expected = (sha256 or "").lower() or None
    if expected is None:
        m = _HASH_IN_NAME.search(name)
        expected = m.group(1) if m else None
    target = cache_dir / name
    if target.is_file() and (expected is None or sha256_of(target).startswith(expected)):
        return target
    tmp = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"cannot download '{url}': {exc}") from exc
    if expected is not None:
        actual = sha256_of(tmp)
        if not actual.startswith(expected):
            tmp.unlink(missing_ok=True)
            raise RuntimeError(
                f"checksum mismatch for '{url}': expected sha256 starting with {expected}, got {actual}"
            )
    os.replace(tmp, target)
    return target
