import argparse
import os
import subprocess
import sys
import textwrap
import types

import pytest

from detcore.errors import PluginError
from detcore.hookspecs import hookimpl
from detcore.plugins import (
    BUILTIN_PLUGINS,
    DISABLE_ENV,
    DetcorePluginManager,
    PluginInfo,
    check_required_plugins,
)
from detcore.registry import Registry


def test_broken_plugin_is_reported_and_others_keep_working(plugin_env, tmp_path, monkeypatch):
    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager, _ = plugin_env([("good", "det-plugin-good", "1.0", {"detcore_register_losses": {"L": dict}})])
    info = manager.load_plugin("broken", "broken_plugin_mod", "det-plugin-broken", "0.1")
    assert info.status == "failed"
    assert "RuntimeError: boom at import" in info.error
    assert "broken_plugin_mod.py" in info.error  # the plugin's own traceback
    assert [i.name for i in manager.failures()] == ["broken"]
    assert Registry(manager).get("loss", "L").plugin == "good"


def test_required_plugins_missing_blocked_and_version(plugin_env):
    manager, _ = plugin_env(
        [("fcos", "det-plugin-fcos", "0.4.0", {}), ("ssd", "det-plugin-ssd", "1.0", {})], blocked=["ssd"]
    )
    check_required_plugins(["fcos", "fcos>=0.3,<1"], manager)
    with pytest.raises(PluginError) as exc:
        check_required_plugins(["htc"], manager, where="cfg.toml")
    assert str(exc.value) == (
        "cfg.toml: this config needs plugin 'htc', which is not installed. "
        "Install it with: pip install det-plugin-htc"
    )
    with pytest.raises(PluginError) as exc:
        check_required_plugins(["fcos>=1.0"], manager)
    assert "needs plugin 'fcos>=1.0', but version 0.4.0 of 'det-plugin-fcos' is installed" in str(exc.value)
    with pytest.raises(PluginError, match="which is blocked"):
        check_required_plugins(["ssd"], manager)
    with pytest.raises(PluginError, match="not a valid plugin requirement"):
        check_required_plugins(["fcos >= = 1"], manager)


def test_builtins_load_through_the_same_path():
    manager = DetcorePluginManager()
    manager.load_builtins()
    infos = list(manager.infos.values())
    assert infos and all(i.builtin and i.distribution == "detcore" for i in infos)
    assert all(i.status == "loaded" for i in infos), [i.error for i in infos if i.error]
    assert all(manager.get_plugin(i.name) is not None for i in infos)


def test_cli_block_option_blocks_a_plugin():
    code = textwrap.dedent(
        """
        import json, io, contextlib
        from detcore.cli.main import main
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["-p", "no:example", "plugins", "--json"])
        status = {p["name"]: p["status"] for p in json.loads(buf.getvalue())}
        print(status["example"], status["detcore.data"])
        """
    )
    pytest.importorskip("det_plugin_example", reason="det-plugin-example is not installed")
    env = {k: v for k, v in os.environ.items() if k != DISABLE_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.split() == ["blocked", "loaded"]


# -- the contract, held as pytest holds its own --------------------------------------------------------


def test_hook_matching_no_spec_refuses_the_plugin_with_the_nearest_spec(plugin_env):
    manager, reg = plugin_env(
        [
            ("typo", "det-plugin-typo", "0.1", {"detcore_register_backbone": {"Net": dict}}),
            ("good", "det-plugin-good", "1.0", {"detcore_register_losses": {"L": dict}}),
        ]
    )
    info = manager.infos["typo"]
    assert (info.status, info.failed_at) == ("failed", "hook check")
    assert info.error.startswith(
        "plugin 'typo' (distribution 'det-plugin-typo', module _detcore_test_plugin_typo): hook "
        "'detcore_register_backbone' matches no hook specification; "
        "did you mean 'detcore_register_backbones'?"
    )
    assert manager.get_plugin("typo") is None  # unregistered: nothing pending is left behind
    manager.check_pending()
    assert reg.get("loss", "L").plugin == "good" and reg.names("backbone") == []


def test_optional_unknown_hook_is_accepted(plugin_env):
    manager, _ = plugin_env([("opt", "det-plugin-opt", "0.1", {})])
    module = types.ModuleType("_detcore_test_optional_hook")

    @hookimpl(optionalhook=True)
    def detcore_register_trackers():  # a spec a newer kernel may add
        return {}

    module.detcore_register_trackers = detcore_register_trackers
    sys.modules[module.__name__] = module
    try:
        assert manager.load_plugin("later", module.__name__, "det-plugin-later", "0.1").status == "loaded"
    finally:
        sys.modules.pop(module.__name__)


class Boom(RuntimeError):
    pass


def _raising_losses():
    raise Boom("no CUDA toolkit found")


def test_registration_hook_that_raises_fails_its_plugin_only(plugin_env, monkeypatch, capsys):
    manager, reg = plugin_env(
        [
            # backbones are collected before losses: what 'flaky' registered first must go as well
            ("flaky", "det-plugin-flaky", "0.3", {"detcore_register_backbones": {"FlakyNet": dict},
                                                  "detcore_register_losses": _raising_losses}),
            ("good", "det-plugin-good", "1.0", {"detcore_register_losses": {"L": dict}}),
        ]
    )  # fmt: skip
    info = manager.infos["flaky"]
    assert (info.status, info.failed_at) == ("failed", "detcore_register_losses()")
    assert info.error.startswith(
        "plugin 'flaky' (distribution 'det-plugin-flaky'): detcore_register_losses() raised:\n"
    )
    assert "Boom: no CUDA toolkit found" in info.error and "_raising_losses" in info.error
    assert reg.failures == [info] and manager.get_plugin("flaky") is None
    assert reg.names("backbone") == [] and reg.get("loss", "L").plugin == "good"
    assert Registry(manager).names("loss") == ["L"]  # rebuilt: the failed plugin stays out

    # `detcore plugins` shows it failed, with the reason, and the good plugin's components
    from detcore import plugins, registry
    from detcore.cli import plugins_cmd

    manager.infos["flaky"] = PluginInfo("flaky", "_detcore_test_plugin_flaky", "det-plugin-flaky", "0.3")
    manager.register(sys.modules["_detcore_test_plugin_flaky"], name="flaky")
    monkeypatch.setattr(plugins, "_MANAGER", manager)
    monkeypatch.setattr(registry, "_REGISTRY", None)
    described = {p["name"]: p for p in plugins_cmd.describe_plugins()}
    assert described["flaky"]["status"] == "failed" and described["flaky"]["components"] == {}
    assert described["flaky"]["failed_at"] == "detcore_register_losses()"
    assert described["good"]["components"] == {"loss": ["L"]}
    assert "plugin 'flaky' from distribution 'det-plugin-flaky' failed (detcore_register_losses())" in (
        capsys.readouterr().err
    )
    plugins_cmd.run(argparse.Namespace(json=False, builtins=False))
    text = capsys.readouterr().out
    assert "flaky  (det-plugin-flaky 0.3)  [failed]" in text
    assert "failed at detcore_register_losses():" in text and "Boom: no CUDA toolkit found" in text


@pytest.mark.parametrize("name", sorted(BUILTIN_PLUGINS))
def test_builtin_plugins_cannot_be_blocked(name, monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    with pytest.raises(PluginError, match=rf"cannot block '{name}' \(blocked=\): the built-in plugins"):
        DetcorePluginManager(blocked=[name, "ssd"])
    monkeypatch.setenv(DISABLE_ENV, f"ssd,{name}")
    with pytest.raises(PluginError, match=rf"cannot block '{name}' \({DISABLE_ENV}=ssd,{name}\)"):
        DetcorePluginManager()


def test_cli_refuses_to_block_a_builtin(monkeypatch, capsys):
    from detcore.cli.main import main

    monkeypatch.delenv(DISABLE_ENV, raising=False)
    assert main(["-p", "no:detcore.layers", "plugins"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("detcore: error: cannot block 'detcore.layers' (-p no:NAME): the built-in plugins")
    assert DISABLE_ENV not in os.environ  # refused before anything was blocked
