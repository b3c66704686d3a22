import json

from detcore.cli.main import main


def test_config_show_prints_merged_toml_with_provenance(tmp_path, capsys):
    (tmp_path / "base.toml").write_text('[optimizer]\ntype = "SGD"\nlr = 0.02\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = ["base.toml"]\n[optimizer]\nmomentum = 0.9\n')
    assert main(["config", "show", str(child), "--set", "optimizer.lr=0.01", "--provenance"]) == 0
    out = capsys.readouterr().out
    assert '[optimizer]\ntype = "SGD"\nlr = 0.01\nmomentum = 0.9\n' in out
    assert f"# optimizer.type     = {tmp_path / 'base.toml'}" in out
    assert f"# optimizer.momentum = {child}" in out
    assert "# optimizer.lr       = --set optimizer.lr=0.01" in out


def test_config_errors_exit_1_with_the_message(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = ["bad.toml"]\n')
    assert main(["config", "show", str(bad)]) == 1
    assert "circular 'extends'" in capsys.readouterr().err


def test_plugins_json_lists_builtins_with_their_components(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["detcore.layers"]["distribution"] == "detcore"
    assert plugins["detcore.layers"]["builtin"] is True
    assert plugins["detcore.layers"]["files"][0].endswith("detcore/builtin/layers.py")


def test_plugin_new_writes_a_package(tmp_path, capsys):
    assert main(["plugin", "new", "mynet", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "det-plugin-mynet"
    pyproject = (root / "pyproject.toml").read_text()
    assert 'mynet = "det_plugin_mynet.plugin"' in pyproject
    assert (root / "det_plugin_mynet" / "backbone.py").exists()
    assert (root / "tests" / "test_mynet.py").exists()
