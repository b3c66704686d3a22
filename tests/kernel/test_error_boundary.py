"""The CLI's one error boundary: every exception is one located line, the traceback only on request."""

from __future__ import annotations

import argparse

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
