"""detcore's pytest plugin (entry point ``pytest11: detcore``): the fixtures plugin test suites share.

Loaded by pytest wherever detcore is installed; ``-p no:detcore`` turns it off. It adds:

- ``one_thread``: the test runs with one torch intra-op thread (restored afterwards);
- ``plugin_env``: a :class:`detcore.testing.FakePlugins` factory of ``(manager, registry)`` pairs built
  from fake plugin modules, with ``DETCORE_DISABLE_PLUGINS`` unset;
- the ini option ``detcore_num_threads``: when set, every test runs with that many torch threads
  (machines whose cores are shared; small models do not gain from more). Unset, nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from detcore.plugins import DISABLE_ENV
from detcore.testing.fake_plugins import FakePlugins
from detcore.testing.threads import torch_threads

NUM_THREADS_INI = "detcore_num_threads"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(NUM_THREADS_INI, "torch intra-op threads for every test (detcore); unset: torch's default")


def _ini_threads(config: pytest.Config) -> int | None:
    raw = str(config.getini(NUM_THREADS_INI) or "").strip()
    if not raw:
        return None
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise pytest.UsageError(f"ini option {NUM_THREADS_INI} = {raw!r}: expected an int >= 1")
    return count


def pytest_configure(config: pytest.Config) -> None:
    _ini_threads(config)  # a bad value is a usage error before any test runs


@pytest.fixture(autouse=True)
def _detcore_num_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    count = _ini_threads(request.config)
    if count is None:
        yield
        return
    with torch_threads(count):
        yield


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for this test."""
    with torch_threads(1):
        yield


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePlugins]:
    """``plugin_env([(name, dist, version, {hook: table})], blocked=())`` -> ``(manager, registry)``."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    env = FakePlugins()
    yield env
    env.close()
