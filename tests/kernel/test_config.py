from pathlib import Path

import pytest
from torch import nn

from detcore.config import load_config, parse_value, validate_config
from detcore.errors import ConfigError, PluginError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def chain(tmp_path):
    write(
        tmp_path / "_base_" / "model.toml",
        """
        [model]
        type = "Det"
        [model.backbone]
        type = "Net"
        depth = 50
        out_indices = [0, 1, 2, 3]
        [model.neck]
        type = "Neck"
        channels = 256
        """.replace("        ", ""),
    )
    write(
        tmp_path / "_base_" / "schedule.toml",
        """
        [optimizer]
        type = "SGD"
        lr = 0.02
        [runner]
        max_epochs = 12
        """.replace("        ", ""),
    )
    return write(
        tmp_path / "exp" / "child.toml",
        """
        extends = ["../_base_/model.toml", "../_base_/schedule.toml"]
        [model.backbone]
        depth = 101
        out_indices = [1, 2]
        [model.neck]
        _replace = true
        type = "OtherNeck"
        [optimizer]
        lr = 0.01
        """.replace("        ", ""),
    )


def test_extends_merge_tables_deeply_and_replace_scalars_and_arrays(chain):
    cfg = load_config(chain)
    assert cfg["model"]["type"] == "Det"  # from the base
    assert cfg["model"]["backbone"] == {"type": "Net", "depth": 101, "out_indices": [1, 2]}
    assert cfg["model"]["neck"] == {"type": "OtherNeck"}  # _replace dropped 'channels'
    assert cfg["optimizer"] == {"type": "SGD", "lr": 0.01}
    assert cfg["runner"]["max_epochs"] == 12
    assert "extends" not in cfg


def test_provenance_names_the_file_or_override_of_each_key(chain):
    cfg = load_config(chain, ["optimizer.lr=0.005", "model.backbone.frozen_stages=1"])
    base = str(chain.parent.parent / "_base_")
    assert cfg.provenance["model.type"] == f"{base}/model.toml"
    assert cfg.provenance["model.backbone.depth"] == str(chain)
    assert cfg.provenance["runner.max_epochs"] == f"{base}/schedule.toml"
    assert cfg.provenance["optimizer.lr"] == "--set optimizer.lr=0.005"
    assert "model.neck.channels" not in cfg.provenance


def test_overrides_are_toml_typed(chain):
    cfg = load_config(
        chain,
        [
            "optimizer.lr=1e-3",
            "runner.max_epochs=24",
            "model.backbone.norm_eval=false",
            "model.backbone.out_indices=[0, 3]",
            "work_dir=runs/a",
            'model.neck.name="quoted"',
            "model.backbone.out_indices.1=2",
            "model.new_table.key=1",
        ],
    )
    assert cfg["optimizer"]["lr"] == 1e-3
    assert cfg["runner"]["max_epochs"] == 24 and isinstance(cfg["runner"]["max_epochs"], int)
    assert cfg["model"]["backbone"]["norm_eval"] is False
    assert cfg["model"]["backbone"]["out_indices"] == [0, 2]
    assert cfg["work_dir"] == "runs/a"  # not TOML -> string
    assert cfg["model"]["neck"]["name"] == "quoted"
    assert cfg["model"]["new_table"] == {"key": 1}
    assert parse_value("{a = 1}") == {"a": 1}


def test_bad_overrides_say_what_is_wrong(chain):
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_config(chain, ["optimizer.lr"])
    with pytest.raises(ConfigError, match="'optimizer.lr' is a float, not a table"):
        load_config(chain, ["optimizer.lr.x=1"])
    with pytest.raises(ConfigError, match="indexes an array of 2 items with '5'"):
        load_config(chain, ["model.backbone.out_indices.5=1"])


def test_circular_extends_is_an_error(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = ["b.toml"]\nx = 1\n')
    write(tmp_path / "b.toml", 'extends = ["a.toml"]\ny = 1\n')
    with pytest.raises(ConfigError, match="circular 'extends'") as exc:
        load_config(a)
    assert "a.toml -> " in str(exc.value) and "b.toml -> " in str(exc.value)


def test_missing_base_and_invalid_toml_name_the_file(tmp_path):
    a = write(tmp_path / "a.toml", 'extends = ["nope.toml"]\n')
    with pytest.raises(ConfigError, match="a.toml: extends: base config 'nope.toml' not found"):
        load_config(a)
    b = write(tmp_path / "b.toml", "x = [1,\n")
    with pytest.raises(ConfigError, match="b.toml: invalid TOML"):
        load_config(b)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_to_toml_round_trips(chain, tmp_path):
    cfg = load_config(chain)
    dumped = write(tmp_path / "dumped.toml", cfg.to_toml())
    assert load_config(dumped).data == cfg.data


class Net(nn.Module):
    def __init__(self, depth: int, out_indices=(0, 1, 2, 3), norm_eval: bool = True):
        super().__init__()


class Neck(nn.Module):
    def __init__(self, channels: int = 256):
        super().__init__()


def test_validation_names_file_key_path_and_nearest_key(plugin_env, tmp_path):
    _, reg = plugin_env(
        [
            (
                "nets",
                "det-plugin-nets",
                "1.0",
                {"detcore_register_backbones": {"Net": Net}, "detcore_register_necks": {"Neck": Neck}},
            )
        ]
    )
    base = write(tmp_path / "base.toml", '[model.backbone]\ntype = "Net"\ndepth = 50\n')
    child = write(
        tmp_path / "child.toml",
        'plugins = ["nets"]\nextends = ["base.toml"]\n[model.neck]\ntype = "Neck"\nchanels = 128\n',
    )
    with pytest.raises(ConfigError) as exc:
        validate_config(load_config(child), registry=reg)
    msg = str(exc.value)
    assert msg.startswith(f"{child}: model.neck.chanels: unknown key 'chanels' for neck 'Neck' (plugin nets)")
    assert "nearest valid key: 'channels'" in msg

    bad_type = load_config(base, ["model.backbone.type=Nett"])
    with pytest.raises(ConfigError) as exc:
        validate_config(bad_type, registry=reg)
    assert "--set model.backbone.type=Nett: model.backbone.type: unknown component 'Nett'" in str(exc.value)
    assert "'Net' (backbone, plugin nets)" in str(exc.value)

    good = load_config(child, ["model.neck.chanels=1"])  # still wrong -> still the error
    with pytest.raises(ConfigError):
        validate_config(good, registry=reg)
    ok = write(tmp_path / "ok.toml", 'plugins = ["nets>=1"]\nextends = ["base.toml"]\n')
    validate_config(load_config(ok), registry=reg)


def test_validation_checks_required_plugins(plugin_env, tmp_path):
    _, reg = plugin_env([("nets", "det-plugin-nets", "1.0", {})])
    cfg_path = write(tmp_path / "c.toml", 'plugins = ["nets", "retinanet"]\n')
    with pytest.raises(PluginError, match="pip install det-plugin-retinanet"):
        validate_config(load_config(cfg_path), registry=reg)


def test_builder_keys_of_layer_tables_pass_validation(tmp_path):
    from detcore.registry import get_registry

    path = write(
        tmp_path / "n.toml",
        '[model.backbone.norm_cfg]\ntype = "BN"\nrequires_grad = false\n'
        '[model.backbone.conv_cfg]\ntype = "BN"\nrequire_grad = false\n',
    )
    with pytest.raises(ConfigError, match="model.backbone.conv_cfg.require_grad: unknown key 'require_grad'"):
        validate_config(load_config(path), registry=get_registry())
    ok = write(tmp_path / "ok.toml", '[model.backbone.norm_cfg]\ntype = "BN"\nrequires_grad = false\n')
    validate_config(load_config(ok), registry=get_registry())


def test_top_level_tables_are_validated_as_the_kind_the_runner_builds(plugin_env, tmp_path):
    _, reg = plugin_env([("nets", "det-plugin-nets", "1.0", {"detcore_register_backbones": {"Net": Net}})])
    path = write(tmp_path / "m.toml", '[model]\ntype = "Net"\ndepth = 50\n')
    with pytest.raises(ConfigError) as exc:
        validate_config(load_config(path), registry=reg)
    assert str(exc.value).startswith(f"{path}: model.type: unknown detector 'Net'")
    assert "'Net' exists as a backbone (plugin nets)" in str(exc.value)


def test_a_component_slot_in_settings_refuses_a_plain_value(tmp_path):
    pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")
    base = Path(__file__).resolve().parents[2] / "configs" / "retinanet" / "retinanet_shapes.toml"
    cfg = load_config(base, ["model.train_cfg.assigner=3"])
    expected = (r"--set model.train_cfg.assigner=3: model.train_cfg.assigner: expects a task_util table or "
                r"a built object \(RetinaHead's train_cfg\), got int 3")
    with pytest.raises(ConfigError, match=expected):
        validate_config(cfg)
