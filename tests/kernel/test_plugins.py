import subprocess
import sys
import textwrap

import pytest

from detcore.errors import PluginError
from detcore.plugins import DetcorePluginManager, check_required_plugins
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
            main(["-p", "no:detcore.metrics", "plugins", "--json"])
        status = {p["name"]: p["status"] for p in json.loads(buf.getvalue())}
        print(status["detcore.metrics"], status["detcore.data"])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["blocked", "loaded"]
