"""``detcore plugin new NAME --kind detector``: the scaffolded detector family installs as a wheel into
a fresh environment (next to detcore, det-plugin-resnet and det-plugin-fpn), is listed with its
components, its shipped config validates and is extendable by plugin name, and its own tests (config
build, training lowers the losses, the detection contract) pass there."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detcore.cli.plugin_new import scaffold
from detcore.errors import DetcoreError

ROOT = Path(__file__).resolve().parents[2]
_HELPERS = Path(__file__).with_name("test_packaging.py")  # build_wheel, run, link_third_party_packages
_spec = importlib.util.spec_from_file_location("_packaging_helpers", _HELPERS)
packaging = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packaging)


def test_detector_scaffold_files(tmp_path):
    root = scaffold("blobs", tmp_path, kind="detector")
    pkg = root / "det_plugin_blobs"
    assert {p.name for p in pkg.iterdir()} >= {"plugin.py", "head.py", "detector.py", "loss.py", "configs"}
    config = (pkg / "configs" / "blobs_shapes.toml").read_text()
    assert '"detcore:_base_/datasets/shapes.toml"' in config and 'type = "BlobsHead"' in config
    assert "class BlobsHead(BaseDenseHead)" in (pkg / "head.py").read_text()
    assert '"configs/*.toml"' in (root / "pyproject.toml").read_text()
    with pytest.raises(DetcoreError, match="not one of backbone, detector"):
        scaffold("other", tmp_path, kind="neck")


@pytest.fixture(scope="module")
def detector_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaffold_detector")
    wheelhouse = tmp / "wheelhouse"
    wheelhouse.mkdir()
    family = scaffold("blobs", tmp, kind="detector")
    wheels = [packaging.build_wheel(src, wheelhouse)
              for src in (ROOT, ROOT / "plugins" / "resnet", ROOT / "plugins" / "fpn", family)]
    venv = tmp / "venv"
    packaging.run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(packaging.run([py, "-c", purelib]).stdout.strip())
    packaging.link_third_party_packages(tmp / "deps")
    (site / "zz_detcore_test_deps.pth").write_text(str(tmp / "deps") + "\n")
    packaging.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
                   *wheels])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DETCORE_DISABLE_PLUGINS")}
    env["OMP_NUM_THREADS"] = "1"
    return {"py": py, "detcore": venv / "bin" / "detcore", "env": env, "tmp": tmp, "family": family}


def test_scaffolded_family_installs_validates_and_trains(detector_env):
    env, tmp = detector_env["env"], detector_env["tmp"]
    out = packaging.run([detector_env["detcore"], "plugins", "--json"], env=env).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["blobs"]["components"] == {
        "dense_head": ["BlobsHead"], "detector": ["Blobs"], "loss": ["BlobsHeatmapLoss"],
    }
    # a config outside any checkout extends the plugin's shipped config by plugin name
    mine = tmp / "mine.toml"
    mine.write_text('extends = ["blobs:configs/blobs_shapes.toml"]\n[model.bbox_head]\nfeat_channels = 16\n')
    shown = packaging.run([detector_env["detcore"], "config", "show", "--validate", mine], env=env, cwd=tmp)
    assert "BlobsHead" in shown.stdout
    # the family's own tests, run against the installed wheels
    result = subprocess.run(
        [str(detector_env["py"]), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(detector_env["family"] / "tests")],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
