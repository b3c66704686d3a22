"""The CLI's one error boundary: every exception is one located line, the traceback only on request."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from detcore.cli import main as cli_main
from detcore.errors import ConfigError, located


def _run_with(monkeypatch, exc: BaseException, argv: list[str]) -> int:
    """Run ``detcore <argv> boom``, a subcommand added for the test that raises ``exc``."""
    real_build = cli_main.build_parser

    def build_parser() -> argparse.ArgumentParser:
        parser = real_build()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        boom = subparsers.add_parser("boom")
        boom.set_defaults(func=lambda args: (_ for _ in ()).throw(exc))
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    return cli_main.main([*argv, "boom"])


def test_foreign_exception_is_one_located_line_without_traceback(monkeypatch, capsys):
    monkeypatch.delenv("DETCORE_DEBUG", raising=False)
    exc = located(ValueError("num_classes must be > 0, got 0"), "cfg.toml: model.bbox_head")
    assert _run_with(monkeypatch, exc, []) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "detcore: error: cfg.toml: model.bbox_head: ValueError: num_classes must be > 0, got 0"
    assert not any("Traceback" in line for line in err)
    assert "--debug" in err[1]


def test_key_error_reads_as_a_missing_key(monkeypatch, capsys):
    monkeypatch.delenv("DETCORE_DEBUG", raising=False)
    assert _run_with(monkeypatch, KeyError(152), []) == 1
    assert capsys.readouterr().err.splitlines()[0] == "detcore: error: KeyError: missing key 152"


def test_detcore_errors_keep_their_own_message(monkeypatch, capsys):
    assert _run_with(monkeypatch, ConfigError("a.toml: optimizer.lr: not a number"), []) == 1
    assert capsys.readouterr().err == "detcore: error: a.toml: optimizer.lr: not a number\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(monkeypatch, capsys, how):
    argv = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("DETCORE_DEBUG", "1")
    assert _run_with(monkeypatch, TypeError("float() argument must be a string"), argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("detcore: error: TypeError: float() argument must be a string")


def test_located_keeps_the_innermost_place():
    exc = located(located(OSError("unreadable"), "img 7 (a.jpg)"), "data.train")
    assert exc.detcore_where == "img 7 (a.jpg)"
    assert isinstance(exc, OSError)


@pytest.mark.parametrize("content, kind", [(None, "FileNotFoundError"), ("{not json", "JSONDecodeError")])
def test_dataset_annotation_errors_name_the_file(tmp_path, content, kind):
    from detcore.cli.main import error_line
    from detcore.data.datasets.coco import CocoDataset

    ann = tmp_path / "ann.json"
    if content is not None:
        ann.write_text(content)
    with pytest.raises(Exception) as info:
        CocoDataset(ann_file=str(ann), pipeline=[], img_prefix=str(tmp_path))
    line = error_line(info.value)
    assert line.startswith(f"annotation file '{ann}': {kind}: "), line


# -- component build errors, checkpoints and code-loading keys: through the CLI, in-process -------------

SHAPES = str(Path(__file__).resolve().parents[2] / "configs" / "retinanet" / "retinanet_shapes.toml")


def _cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    rc = cli_main.main(argv)
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.startswith("detcore:")]


@pytest.mark.parametrize(
    "override, where, what",
    [
        ("model.bbox_head.num_classes=0", "model.bbox_head", "ValueError: RetinaHead: num_classes must"),
        ("model.backbone.depth=19", "model.backbone", "KeyError: ResNet: invalid depth 19"),
    ],
)
def test_component_build_errors_name_the_file_and_table(tmp_path, capsys, monkeypatch, override, where, what):
    monkeypatch.delenv("DETCORE_DEBUG", raising=False)
    rc, err = _cli(["train", SHAPES, "--work-dir", str(tmp_path), "--set", override], capsys)
    assert rc == 1
    assert err[0].startswith(f"detcore: error: {SHAPES}: {where}: {what}"), err
    assert len(err) == 2 and "--debug" in err[1]  # one line, then the hint; no traceback


def _pickled_checkpoint(path: Path) -> Path:
    import torch

    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": {"obj": _Opaque()}}, path)
    return path


class _Opaque:
    pass


def test_refused_test_checkpoint_says_why_and_how_to_convert(tmp_path, capsys):
    ckpt = _pickled_checkpoint(tmp_path / "pickled.pth")
    rc, err = _cli(["test", SHAPES, str(ckpt), "--work-dir", str(tmp_path / "w")], capsys)
    assert rc == 1 and len(err) == 1
    assert err[0].startswith(f"detcore: error: checkpoint '{ckpt}' cannot be loaded weights-only (it pickles")
    assert "_Opaque" in err[0] and "weights_only=False); torch.save({'state_dict'" in err[0]


def test_unreadable_checkpoint_is_not_called_a_pickle(tmp_path, capsys):
    ckpt = tmp_path / "garbage.pth"
    ckpt.write_bytes(b"garbage")
    rc, err = _cli(["test", SHAPES, str(ckpt), "--work-dir", str(tmp_path / "w")], capsys)
    assert rc == 1
    assert err == [f"detcore: error: checkpoint '{ckpt}' is not a readable torch file (UnpicklingError: "
                   "Unsupported operand 103)"]


@pytest.mark.parametrize("kind", ["pickled", "missing"])
def test_pretrained_init_cfg_checkpoint_is_located(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.delenv("DETCORE_DEBUG", raising=False)
    ckpt = _pickled_checkpoint(tmp_path / "b.pth") if kind == "pickled" else tmp_path / "none.pth"
    table = f'model.backbone.init_cfg={{type = "Pretrained", checkpoint = "{ckpt}"}}'
    rc, err = _cli(["train", SHAPES, "--work-dir", str(tmp_path / "w"), "--set", table], capsys)
    assert rc == 1
    if kind == "pickled":
        assert err == [err[0]] and err[0].startswith(
            f"detcore: error: ResNet init_cfg (Pretrained): checkpoint '{ckpt}' cannot be loaded weights-only"
        )
    else:
        assert err[0] == (
            f"detcore: error: ResNet init_cfg (Pretrained): FileNotFoundError: checkpoint file '{ckpt}' "
            "does not exist"
        )


def test_auto_selected_latest_checkpoint_is_named_on_resume(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    _pickled_checkpoint(work / "latest.pth")  # latest.pth as a checkpoint itself
    rc, err = _cli(
        ["train", SHAPES, "--work-dir", str(work), "--resume", "--set", "runner.max_epochs=1"], capsys
    )
    assert rc == 1 and len(err) == 1
    latest = work / "latest.pth"
    assert err[0].startswith(
        f"detcore: error: --resume {latest} (auto-selected in the work dir; --resume PATH picks another): "
        f"checkpoint '{latest}' cannot be loaded weights-only"
    ), err


@pytest.mark.parametrize("key", ["custom_imports", "_base_"])
def test_code_loading_keys_are_refused(tmp_path, capsys, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = ["{SHAPES}"]\n{key} = ["my_module"]\n')
    rc, err = _cli(["config", "show", str(cfg)], capsys)
    assert rc == 1
    assert err[0].startswith(f"detcore: error: {cfg}: {key}: detcore configs never import or run code; ")


def test_a_type_the_factory_declares_is_refused_before_anything_is_built(tmp_path, capsys):
    rc, err = _cli(["train", SHAPES, "--work-dir", str(tmp_path), "--set", "optimizer.lr=[1, 2]"], capsys)
    assert rc == 1
    assert err == ["detcore: error: --set optimizer.lr=[1, 2]: optimizer.lr: expects float, got list [1, 2] "
                   "(optimizer 'AdamW')"]


def test_an_optimizer_constructor_error_names_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DETCORE_DEBUG", raising=False)
    rc, err = _cli(["train", SHAPES, "--work-dir", str(tmp_path), "--set", "optimizer.lr=-1.0"], capsys)
    assert rc == 1
    assert err[0] == f"detcore: error: {SHAPES}: optimizer: ValueError: Invalid learning rate: -1.0"


class _PickyNeck:
    """A third-party component whose constructor checks its own arguments."""

    def __init__(self, channels: int = 8) -> None:
        if channels % 2:
            raise ValueError(f"PickyNeck: channels must be even, got {channels}")


def test_a_plugin_component_error_is_located_like_the_kernels(plugin_env, tmp_path):
    from detcore.config import load_config
    from detcore.errors import config_sources, describe

    hooks = {"detcore_register_necks": {"PickyNeck": _PickyNeck}}
    _, reg = plugin_env([("picky", "det-plugin-picky", "1.0", hooks)])
    cfg_path = tmp_path / "n.toml"
    cfg_path.write_text('[model.neck]\ntype = "PickyNeck"\nchannels = 3\n')
    cfg = load_config(cfg_path)
    with pytest.raises(ValueError) as info, config_sources(cfg.source_of):
        reg.build("neck", cfg.get("model.neck"), where="model.neck")
    expected = f"{cfg_path}: model.neck: ValueError: PickyNeck: channels must be even, got 3"
    assert describe(info.value) == expected
