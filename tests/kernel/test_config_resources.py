"""extends entries naming configs shipped inside installed distributions (``detcore:...``, a plugin's
short name or a package), resolved through importlib.resources, from a config outside the repository."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import detcore
from detcore.config import config_root, load_config, resolve_extends
from detcore.errors import ConfigError
from detcore.testing import load_validated_config

OUT_OF_TREE = """\
extends = [
    "detcore:_base_/models/retinanet_r50_fpn.toml",
    "detcore:_base_/datasets/shapes.toml",
    "detcore:_base_/schedules/schedule_shapes.toml",
    "detcore:_base_/default_runtime.toml",
]

[model.backbone]
_replace = true
type = "ResNet"
depth = 18
base_channels = 16
out_indices = [1, 2, 3]
norm_cfg = { type = "BN" }
norm_eval = false

[model.neck]
in_channels = [32, 64, 128]
out_channels = 32

[model.bbox_head]
num_classes = 3
in_channels = 32
feat_channels = 32
"""


def test_detcore_root_is_the_shipped_configs():
    root = config_root("detcore")
    assert (root / "_base_" / "datasets" / "shapes.toml").is_file()
    assert root == Path(detcore.__file__).resolve().parents[1] / "configs"  # this checkout
    # what a wheel ships: configs/ as package data detcore/configs (a link to configs/ here)
    shipped = Path(detcore.__file__).resolve().parent / "configs"
    assert shipped.is_dir() and shipped.resolve() == root
    assert '"configs/**/*.toml"' in (root.parent / "pyproject.toml").read_text()


def test_out_of_tree_config_extends_the_shipped_shapes_pieces(tmp_path):
    path = tmp_path / "elsewhere" / "my_retinanet.toml"
    path.parent.mkdir()
    path.write_text(OUT_OF_TREE)
    cfg = load_validated_config(path)
    assert cfg.get("data.train.type") == "ShapesDataset" and cfg.get("data.val.split") == "val"
    assert cfg.get("evaluator.type") == "CocoMetric" and cfg.get("optimizer.type") == "AdamW"
    assert cfg.get("model.bbox_head.num_classes") == 3 and cfg.get("model.type") == "RetinaNet"
    shapes = config_root("detcore") / "_base_" / "datasets" / "shapes.toml"
    assert cfg.source_of("data.train.type") == str(shapes)
    assert cfg.source_of("model.bbox_head.num_classes") == str(path)


@pytest.fixture
def config_package(tmp_path, monkeypatch):
    """An importable package ``pkg_with_configs`` (entry point ``myplug``) shipping configs/base.toml,
    which itself extends a detcore base by resource name and a sibling by relative path."""
    pkg = tmp_path / "site" / "pkg_with_configs"
    (pkg / "configs").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "configs" / "sibling.toml").write_text("seed = 7\n")
    (pkg / "configs" / "base.toml").write_text(textwrap.dedent("""\
        extends = ["detcore:_base_/schedules/schedule_shapes.toml", "sibling.toml"]
        [runner]
        max_epochs = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ep = SimpleNamespace(name="myplug", value="pkg_with_configs.plugin", dist=None)
    monkeypatch.setattr("detcore.plugins._entry_points", lambda: [ep])
    yield pkg
    sys.modules.pop("pkg_with_configs", None)


@pytest.mark.parametrize("name", ["myplug", "pkg_with_configs"])
def test_plugin_or_package_configs(config_package, tmp_path, name):
    own = tmp_path / "mine.toml"
    own.write_text(f'extends = ["{name}:configs/base.toml"]\n[runner]\nmax_epochs = 5\n')
    cfg = load_config(own)
    assert cfg.get("seed") == 7 and cfg.get("optimizer.type") == "AdamW"
    assert cfg.get("runner.max_epochs") == 5
    assert cfg.source_of("seed") == str((config_package / "configs" / "sibling.toml").resolve())


def test_unknown_distribution_and_missing_file_are_located(config_package, tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text('extends = ["nosuchplug:configs/base.toml"]\n')
    expected = (r"mine.toml: extends: 'nosuchplug:configs/base.toml': no installed plugin or package "
                r"'nosuchplug' ships configs \(installed plugins: myplug")
    with pytest.raises(ConfigError, match=expected):
        load_config(own)
    own.write_text('extends = ["myplug:configs/nope.toml"]\n')
    with pytest.raises(ConfigError, match=r"base config 'myplug:configs/nope.toml' not found \(looked at .*"
                                          r"pkg_with_configs/configs/nope.toml\)"):
        load_config(own)


def test_relative_and_absolute_entries_unchanged(tmp_path):
    assert resolve_extends("../a.toml", tmp_path / "x" / "c.toml") == (tmp_path / "a.toml").resolve()
    assert resolve_extends(str(tmp_path / "b.toml"), tmp_path / "c.toml") == (tmp_path / "b.toml").resolve()
