"""Every config shipped under configs/ merges and validates against the installed components."""

from pathlib import Path

import pytest

from detcore.config import load_config, validate_config

ROOT = Path(__file__).resolve().parents[1] / "configs"
#: folders of config fragments that other configs extend (no model of their own), as in the reference
FRAGMENT_DIRS = {"_base_", "common"}
CONFIGS = sorted(p for p in ROOT.rglob("*.toml") if "_base_" not in p.parts)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path):
    cfg = load_config(path)
    for plugin in cfg.get("plugins", []):
        pytest.importorskip(f"det_plugin_{plugin.split('>')[0].split('=')[0].strip()}")
    validate_config(cfg)
    if not FRAGMENT_DIRS & set(path.relative_to(ROOT).parts):
        assert cfg.get("model.type"), f"{path} has no model.type"
