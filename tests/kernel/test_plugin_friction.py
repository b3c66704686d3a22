"""Friction fixes around plugins: file listing, name conflicts, near-miss and impossible requirements,
one traceback per import failure, and where the shapes data goes."""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import pytest

import detcore
from detcore.cli import plugins_cmd
from detcore.errors import PluginError
from detcore.plugins import _distribution_location, check_required_plugins, report_failures


def test_files_are_package_folders_never_site_packages(tmp_path):
    (tmp_path / "det_plugin_x").mkdir()
    dist = SimpleNamespace(read_text=lambda name: "det_plugin_x\nmissing_pkg\n",
                           locate_file=lambda rel: tmp_path / rel)
    assert _distribution_location(dist) == [str(tmp_path / "det_plugin_x")]
    for plugin in plugins_cmd.describe_plugins():
        for f in plugin["files"]:
            assert not f.rstrip("/").endswith(("site-packages", "dist-packages")), (plugin["name"], f)


def test_conflicting_names_are_flagged(plugin_env, monkeypatch, capsys):
    class Dup:
        pass

    manager, registry = plugin_env([
        ("alpha", "det-plugin-alpha", "1.0", {"detcore_register_backbones": {"Dup": Dup, "Solo": Dup}}),
        ("beta", "det-plugin-beta", "2.0", {"detcore_register_backbones": {"Dup": Dup}}),
    ])
    assert plugins_cmd.name_conflicts(registry) == {
        "alpha": {"backbone Dup": ["alpha:Dup", "beta:Dup"]},
        "beta": {"backbone Dup": ["alpha:Dup", "beta:Dup"]},
    }
    monkeypatch.setattr(plugins_cmd, "get_plugin_manager", lambda: manager)
    monkeypatch.setattr(plugins_cmd, "get_registry", lambda: registry)
    plugins_cmd.run(argparse.Namespace(json=False, builtins=False))
    out = capsys.readouterr().out
    assert out.count("conflict: backbone Dup is offered by 2 plugins; configs must name one of "
                     "'alpha:Dup', 'beta:Dup'") == 2
    plugins_cmd.run(argparse.Namespace(json=True, builtins=False))
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["alpha"]["conflicts"] == {"backbone Dup": ["alpha:Dup", "beta:Dup"]}


def test_builtins_are_qualified_by_their_plugin_name():
    loss = detcore.build("loss", {"type": "detcore.losses:L1Loss"})
    assert type(loss).__name__ == "L1Loss"


def test_missing_plugin_close_to_an_installed_one_gets_did_you_mean(plugin_env):
    manager, _ = plugin_env([("resnet", "det-plugin-resnet", "0.1.0", {})])
    with pytest.raises(PluginError) as err:
        check_required_plugins(["resnett"], manager, where="cfg.toml")
    message = str(err.value)
    assert "cfg.toml: this config needs plugin 'resnett', which is not installed." in message
    hint = message.index("Did you mean 'resnet' (installed)?")
    assert hint < message.index("pip install det-plugin-resnett")
    for far in ("yolo", "gridnet"):  # 'gridnet' shares letters with 'resnet' but is no typo of it
        expected = rf"not installed\. Install it with: pip install det-plugin-{far}$"
        with pytest.raises(PluginError, match=expected):
            check_required_plugins([far], manager)


@pytest.mark.parametrize("spec", ["resnet>=2,<1", "resnet==1.0,==2.0", "resnet<0.1,>0.1"])
def test_impossible_requirement_says_so(plugin_env, spec):
    manager, _ = plugin_env([("resnet", "det-plugin-resnet", "0.1.0", {})])
    with pytest.raises(PluginError, match="can never be satisfied") as err:
        check_required_plugins([spec], manager)
    assert "pip install" not in str(err.value)


def test_satisfiable_mismatch_still_suggests_the_install(plugin_env):
    manager, _ = plugin_env([("resnet", "det-plugin-resnet", "0.1.0", {})])
    with pytest.raises(PluginError, match=r"pip install 'det-plugin-resnet>=0\.2'"):
        check_required_plugins(["resnet>=0.2"], manager)
    check_required_plugins(["resnet>=0.1,!=0.2,<1"], manager)


def test_import_failure_traceback_printed_once(tmp_path, monkeypatch, capsys):
    from detcore.plugins import DetcorePluginManager

    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = DetcorePluginManager()
    info = manager.load_plugin("broken", "broken_plugin_mod", "det-plugin-broken", "0.1")
    with pytest.raises(PluginError) as unreported:
        check_required_plugins(["broken"], manager)
    assert "RuntimeError: boom at import" in str(unreported.value)  # nothing printed yet: included
    report_failures([info])
    assert capsys.readouterr().err.count("RuntimeError: boom at import") == 1
    with pytest.raises(PluginError) as err:
        check_required_plugins(["broken"], manager)
    assert "which failed (import) (its traceback is printed above)" in str(err.value)
    assert "Traceback" not in str(err.value)
    sys.modules.pop("broken_plugin_mod", None)


def test_shapes_location_is_printed_when_generated(tmp_path, capsys):
    from detcore.data.shapes import generate_shapes

    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_val=1, image_size=(64, 64), max_size=30, min_size=10)
    assert f"generated the shapes data (2 train / 1 val images) in {root}" in capsys.readouterr().err
    generate_shapes(str(root), num_train=2, num_val=1, image_size=(64, 64), max_size=30, min_size=10)
    assert capsys.readouterr().err == ""  # reused: nothing to say
