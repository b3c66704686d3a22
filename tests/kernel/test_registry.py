import pytest
from torch import nn

from detcore.errors import ComponentError, ConfigError


class TinyNet(nn.Module):
    def __init__(self, depth: int, width: int = 8):
        super().__init__()
        self.depth, self.width = depth, width


class OtherNet(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.channels = channels


class HeadBase(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 16):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels


class DerivedHead(HeadBase):
    def __init__(self, stacked_convs: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.stacked_convs = stacked_convs


def test_build_passes_arguments_and_defaults(plugin_env):
    _, reg = plugin_env(
        [("nets", "det-plugin-nets", "0.3", {"detcore_register_backbones": {"TinyNet": TinyNet}})]
    )
    net = reg.build("backbone", {"type": "TinyNet", "depth": 3}, width=5)
    assert (net.depth, net.width) == (3, 5)
    # the table wins over defaults passed by the parent
    assert reg.build("backbone", {"type": "TinyNet", "depth": 3, "width": 7}, width=5).width == 7
    assert reg.get("backbone", "TinyNet").distribution == "det-plugin-nets"


def test_unknown_name_lists_nearest_names_and_their_plugins(plugin_env):
    _, reg = plugin_env(
        [("nets", "det-plugin-nets", "0.3", {"detcore_register_backbones": {"TinyNet": TinyNet}})]
    )
    with pytest.raises(ComponentError) as exc:
        reg.build("backbone", {"type": "TinyNt", "depth": 1})
    assert "unknown backbone 'TinyNt'" in str(exc.value)
    assert "'TinyNet' (plugin nets)" in str(exc.value)


def test_unknown_key_names_the_nearest_valid_key(plugin_env):
    _, reg = plugin_env(
        [("nets", "det-plugin-nets", "0.3", {"detcore_register_backbones": {"TinyNet": TinyNet}})]
    )
    with pytest.raises(ConfigError) as exc:
        reg.build("backbone", {"type": "TinyNet", "dept": 1}, where="model.backbone")
    msg = str(exc.value)
    assert msg.startswith("model.backbone: unknown key 'dept'")
    assert "nearest valid key: 'depth'" in msg


def test_missing_required_key_is_an_error(plugin_env):
    _, reg = plugin_env(
        [("nets", "det-plugin-nets", "0.3", {"detcore_register_backbones": {"TinyNet": TinyNet}})]
    )
    with pytest.raises(ConfigError, match="needs key\\(s\\) 'depth'"):
        reg.build("backbone", {"type": "TinyNet"})


def test_kwargs_forwarding_classes_are_checked_against_their_bases(plugin_env):
    _, reg = plugin_env(
        [("heads", "det-plugin-heads", "1.0", {"detcore_register_dense_heads": {"DerivedHead": DerivedHead}})]
    )
    head = reg.build("dense_head", {"type": "DerivedHead", "num_classes": 3, "stacked_convs": 2})
    assert (head.num_classes, head.stacked_convs, head.in_channels) == (3, 2, 16)
    with pytest.raises(ConfigError, match="nearest valid key: 'in_channels'"):
        reg.build("dense_head", {"type": "DerivedHead", "num_classes": 3, "in_channel": 2})


def test_same_name_from_two_plugins_names_both_distributions(plugin_env):
    _, reg = plugin_env(
        [
            ("alpha", "det-plugin-alpha", "1.0", {"detcore_register_backbones": {"Net": TinyNet}}),
            ("beta", "det-plugin-beta", "2.0", {"detcore_register_backbones": {"Net": OtherNet}}),
        ]
    )
    with pytest.raises(ComponentError) as exc:
        reg.build("backbone", {"type": "Net", "depth": 1})
    msg = str(exc.value)
    assert "det-plugin-alpha" in msg and "det-plugin-beta" in msg
    assert "'alpha:Net'" in msg and "'beta:Net'" in msg
    # qualified names pick one
    assert isinstance(reg.build("backbone", {"type": "alpha:Net", "depth": 1}), TinyNet)
    assert isinstance(reg.build("backbone", {"type": "beta:Net"}), OtherNet)
    with pytest.raises(ComponentError, match="plugin 'gamma' does not offer it"):
        reg.build("backbone", {"type": "gamma:Net"})


def test_blocking_a_plugin_removes_its_components(plugin_env):
    manager, reg = plugin_env(
        [
            ("alpha", "det-plugin-alpha", "1.0", {"detcore_register_backbones": {"Net": TinyNet}}),
            ("beta", "det-plugin-beta", "2.0", {"detcore_register_backbones": {"Net": OtherNet}}),
        ],
        blocked=["alpha"],
    )
    assert manager.infos["alpha"].status == "blocked"
    assert isinstance(reg.build("backbone", {"type": "Net"}), OtherNet)


def test_blocking_through_the_environment(plugin_env, monkeypatch):
    monkeypatch.setenv("DETCORE_DISABLE_PLUGINS", "beta, alpha")
    manager, reg = plugin_env(
        [("alpha", "det-plugin-alpha", "1.0", {"detcore_register_backbones": {"Net": TinyNet}})]
    )
    assert manager.infos["alpha"].status == "blocked"
    with pytest.raises(ComponentError, match="Not loaded \\(blocked or failed\\): alpha"):
        reg.get("backbone", "Net")


def test_hook_returning_a_non_mapping_marks_its_plugin_failed(plugin_env):
    manager, reg = plugin_env(
        [
            ("bad", "det-plugin-bad", "1.0", {"detcore_register_losses": ["NotAMapping"]}),
            ("good", "det-plugin-good", "1.0", {"detcore_register_backbones": {"Net": TinyNet}}),
        ]
    )
    info = manager.infos["bad"]
    assert (info.status, info.failed_at) == ("failed", "detcore_register_losses()")
    assert info.error == (
        "plugin 'bad' (distribution 'det-plugin-bad'): detcore_register_losses() must return a mapping "
        "name -> factory, got list"
    )
    assert reg.failures == [info]
    assert reg.get("backbone", "Net").plugin == "good"
