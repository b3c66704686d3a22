"""Engine tests: the tiny test plugin is loaded on the process-wide plugin manager."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _engine_tiny  # noqa: E402


@pytest.fixture(autouse=True)
def tiny_plugin():
    _engine_tiny.register()
    _engine_tiny.CALLS.clear()
    yield _engine_tiny


@pytest.fixture
def make_runner(tmp_path):
    from detcore.config import Config
    from detcore.engine import Runner

    def factory(resume=False, amp=None, work_dir=None, **overrides):
        data = _engine_tiny.base_config(work_dir or tmp_path / "work", **overrides)
        return Runner.from_config(Config(data, {}, str(tmp_path / "tiny.toml")), resume=resume, amp=amp)

    return factory
