"""Packaging proof: a plugin built as a wheel, installed into a fresh environment next to detcore,
is seen by ``detcore plugins`` and builds from a config; uninstalled, the config fails with the hint.

The fresh environment gets detcore and the plugin from wheels built here. Its third-party
dependencies (torch, numpy, pluggy, ...) are linked from the running environment rather than
installed again, so no network or multi-GB download is needed; detcore and plugins installed in the
running environment are deliberately *not* linked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from detcore.cli.plugin_new import scaffold

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "third_party_plugin"
OWN_PREFIXES = (
    "detcore",
    "det_plugin",
    "det-plugin",
    "__editable__",
    "_detcore",
    "easy-install",
    "distutils-precedence",
)


def run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if result.returncode != 0 and kwargs.get("check", True):
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_wheel(source: Path, outdir: Path) -> Path:
    before = set(outdir.glob("*.whl"))
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            outdir,
            source,
        ]
    )
    (new,) = set(outdir.glob("*.whl")) - before
    return new


def link_third_party_packages(dest: Path) -> None:
    """Symlink every package of the running environment except detcore's own into ``dest``."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if (
            name.startswith(OWN_PREFIXES)
            or name.endswith(".pth")
            or name in ("pip", "setuptools")
            or (name.startswith(("pip-", "setuptools-")) and name.endswith(".dist-info"))
        ):
            continue
        (dest / name).symlink_to(entry)


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    wheelhouse = tmp / "wheelhouse"
    wheelhouse.mkdir()
    detcore_whl = build_wheel(ROOT, wheelhouse)
    example_whl = build_wheel(EXAMPLE, wheelhouse)
    scaffolded = scaffold("tinyscaffold", tmp)
    scaffold_whl = build_wheel(scaffolded, wheelhouse)
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    venv_site = Path(
        run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    link_third_party_packages(tmp / "deps")
    (venv_site / "zz_detcore_test_deps.pth").write_text(str(tmp / "deps") + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            py,
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            detcore_whl,
            example_whl,
            scaffold_whl,
        ]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DETCORE_DISABLE_PLUGINS")}
    return {"py": py, "detcore": venv / "bin" / "detcore", "env": env, "tmp": tmp, "scaffold": scaffolded}


def test_installed_plugins_are_listed(fresh_env):
    out = run([fresh_env["detcore"], "plugins", "--json"], env=fresh_env["env"]).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["example"]["distribution"] == "det-plugin-example"
    assert plugins["example"]["version"] == "1.2.0"
    assert plugins["example"]["status"] == "loaded"
    assert plugins["example"]["components"] == {
        "backbone": ["PlainConvNet"],
        "loss": ["CharbonnierLoss"],
        "run_hook": ["LossHistoryHook"],
    }
    assert (
        str(fresh_env["tmp"] / "venv") in plugins["example"]["files"][0]
    )  # installed copy, not the source tree
    assert plugins["tinyscaffold"]["components"] == {"backbone": ["TinyscaffoldBackbone"]}
    # only what the fresh environment holds: no plugins from the development environment
    assert {p["name"] for p in plugins.values() if not p["builtin"]} == {"example", "tinyscaffold"}


def test_components_build_from_config_then_uninstall_gives_install_hint(fresh_env):
    config = EXAMPLE / "configs" / "example.toml"
    code = (
        "import sys, torch, detcore\n"
        "from detcore.config import load_config, validate_config\n"
        "cfg = load_config(sys.argv[1]); validate_config(cfg)\n"
        "net = detcore.build('backbone', cfg['model']['backbone'])\n"
        "print([tuple(o.shape) for o in net(torch.zeros(1, 3, 32, 32))])\n"
        "print(type(detcore.build('loss', cfg['model']['loss'])).__name__)\n"
    )
    out = run([fresh_env["py"], "-c", code, config], env=fresh_env["env"]).stdout.splitlines()
    assert out == ["[(1, 16, 8, 8), (1, 32, 4, 4)]", "CharbonnierLoss"]

    # the scaffold's own test passes in that environment too
    run(
        [fresh_env["py"], "-m", "pytest", "-q", "-p", "no:cacheprovider", fresh_env["scaffold"] / "tests"],
        env=fresh_env["env"],
        cwd=fresh_env["tmp"],
    )

    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            fresh_env["py"],
            "uninstall",
            "-y",
            "-q",
            "det-plugin-example",
        ]
    )
    result = run(
        [fresh_env["detcore"], "config", "show", "--validate", config], env=fresh_env["env"], check=False
    )
    assert result.returncode == 1
    assert "this config needs plugin 'example', which is not installed" in result.stderr
    assert "pip install det-plugin-example" in result.stderr


def test_scaffold_refuses_bad_names(tmp_path):
    from detcore.errors import DetcoreError

    with pytest.raises(DetcoreError, match="lowercase Python identifier"):
        scaffold("My-Plugin", tmp_path)
    scaffold("ok_name", tmp_path)
    with pytest.raises(DetcoreError, match="already exists"):
        scaffold("ok_name", tmp_path)
