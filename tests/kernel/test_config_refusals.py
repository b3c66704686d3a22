"""The config reader and `config show --validate` refuse bad configs with one located line (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detcore.cli.main import main

SHAPES = str(Path(__file__).resolve().parents[2] / "configs" / "retinanet" / "retinanet_shapes.toml")
RUNTIME = str(Path(SHAPES).parents[1] / "_base_" / "default_runtime.toml")


def _validate(capsys, config: str, *overrides: str) -> tuple[int, str]:
    argv = ["config", "show", "--validate", config]
    for o in overrides:
        argv += ["--set", o]
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("detcore:")]
    assert len(err) == (1 if rc else len(err)), err  # a refusal is one line
    return rc, err[0] if err else ""


def test_a_directory_is_refused(tmp_path, capsys):
    assert _validate(capsys, str(tmp_path)) == (
        1, f"detcore: error: {tmp_path}: is a directory, not a config file (give a .toml file in it)"
    )


def test_a_non_utf8_file_is_refused_with_the_line(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('seed = 0\n# caf\xe9\n'.encode("latin-1"))
    assert _validate(capsys, str(cfg)) == (
        1, f"detcore: error: {cfg}: not a UTF-8 text file (byte 0xe9 at line 2); TOML configs are UTF-8"
    )


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_an_empty_file_is_refused(tmp_path, capsys, content):
    cfg = tmp_path / "empty.toml"
    cfg.write_text(content)
    assert _validate(capsys, str(cfg)) == (1, f"detcore: error: {cfg}: the config file is empty")


def test_extends_entry_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "base").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text('extends = ["base"]\n')
    rc, line = _validate(capsys, str(cfg))
    assert rc == 1
    assert line == f"detcore: error: {cfg}: extends: 'base' is not a file (looked at {tmp_path / 'base'})"


def test_non_string_plugin_name(capsys):
    assert _validate(capsys, SHAPES, "plugins=[1]") == (
        1, "detcore: error: --set plugins=[1]: plugins.0: a plugin name (a string) is expected, got int 1"
    )


def test_unknown_top_level_table_gets_a_did_you_mean(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = ["{SHAPES}"]\n[optimzer]\nlr = 0.1\n')
    rc, line = _validate(capsys, str(cfg))
    assert rc == 1
    expected = f"detcore: error: {cfg}: optimzer: unknown top-level key; did you mean 'optimizer'?"
    assert line.startswith(expected)


def test_unknown_data_key_gets_a_did_you_mean(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'extends = ["{SHAPES}"]\n[data]\nbatch_sise = 4\n')
    rc, line = _validate(capsys, str(cfg))
    assert rc == 1
    assert line.startswith(
        f"detcore: error: {cfg}: data.batch_sise: unknown key 'batch_sise' in config's data; "
        "did you mean 'batch_size'?"
    )


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.batch_size=0", "data.batch_size: must be >= 1 (config's data), got 0"),
        ("data.num_workers=1.5", "data.num_workers: expects int (config's data), got float 1.5"),
        ("amp.dtype='int8'", "amp.dtype: must be one of 'float16', 'bfloat16' (config's amp), got 'int8'"),
        ("seed='x'", "seed: expects int (config's top level), got str 'x'"),
        # declared by the factories' signatures
        ("optimizer.lr=[1, 2]", "optimizer.lr: expects float, got list [1, 2] (optimizer 'AdamW')"),
        (
            "model.bbox_head.num_classes='three'",
            "model.bbox_head.num_classes: expects int, got str 'three' (dense_head 'RetinaHead')",
        ),
    ],
)
def test_declared_types_and_ranges(capsys, override, expected):
    assert _validate(capsys, SHAPES, override) == (1, f"detcore: error: --set {override}: {expected}")


@pytest.mark.parametrize(
    "override, source, expected",
    [
        ("checkpoint_config.intervl=2", RUNTIME, "checkpoint_config: unknown key 'intervl' for run_hook "
         "'CheckpointHook' (plugin detcore.engine); nearest valid key: 'interval'"),
        ("checkpoint_config.interval=0", RUNTIME, "checkpoint_config: checkpoint_config.interval "
         "must be an int >= 1, got 0"),
        ("evaluation.interval=-1", SHAPES, "evaluation: evaluation.interval must be"),
        ("log_config.interval='x'", SHAPES, "log_config: log_config.interval must be"),
        ("optimizer_config.accumulate=0", SHAPES, "optimizer_config: optimizer_config."),
        ("runner.max_epochs=0", SHAPES, "runner: max_epochs must be a positive int, got 0"),
        ("runner.type='Nope'", SHAPES, "runner: unknown loop 'Nope'"),
        ("lr_config.policy='nope'", SHAPES, "lr_config: unknown scheduler 'nope'"),
        ("lr_config.warmup='quad'", "--set lr_config.warmup='quad'", "lr_config.warmup must be one of"),
    ],
)
def test_engine_tables_are_validated(capsys, override, source, expected):
    rc, line = _validate(capsys, SHAPES, override)
    assert rc == 1
    assert line.startswith(f"detcore: error: {source}: {expected}"), line


def test_schedule_step_past_the_end_is_a_warning_naming_the_key(capsys):
    rc = main(["config", "show", "--validate", SHAPES, "--set", "lr_config.policy='step'",
               "--set", "lr_config.step=[8, 20]", "--set", "lr_config.min_lr_ratio=0.0"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 0
    assert err == [
        "detcore: warning: --set lr_config.step=[8, 20]: lr_config.step.1: step at epoch 20 is at or past "
        "the end of training (runner.max_epochs = 20); it never takes effect"
    ]


def test_shipped_configs_validate_cleanly():
    import warnings

    from detcore.config import load_config, validate_config

    root = Path(SHAPES).parents[1]
    configs = [p for p in sorted(root.glob("**/*.toml")) if "_base_" not in p.parts]
    assert len(configs) > 30
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no shipped schedule step is past its end either
        for path in configs:
            validate_config(load_config(path))


class _RunnerReadingLoop:
    """A third-party loop whose constructor needs the real runner."""

    def __init__(self, runner, max_epochs: int = 1) -> None:
        self.device = runner.device


def test_a_loop_that_needs_the_runner_is_left_to_the_run(plugin_env, tmp_path):
    from detcore.config import load_config, validate_config

    hooks = {"detcore_register_loops": {"MyLoop": _RunnerReadingLoop}}
    _, reg = plugin_env([("loops", "det-plugin-loops", "1.0", hooks)])
    path = tmp_path / "c.toml"
    path.write_text('[runner]\ntype = "MyLoop"\nmax_epochs = 2\n')
    validate_config(load_config(path), registry=reg)  # nothing to refuse without a runner
    path.write_text('[runner]\ntype = "MyLoop"\nmax_epoks = 2\n')
    with pytest.raises(Exception, match=r"runner: unknown key 'max_epoks' for loop 'MyLoop'"):
        validate_config(load_config(path), registry=reg)


def test_a_table_set_only_by_an_override_names_the_override(capsys):
    rc, line = _validate(capsys, SHAPES, "optimzer.lr=1")
    assert rc == 1 and line.startswith("detcore: error: --set optimzer.lr=1: optimzer: unknown top-level key")
    rc, line = _validate(capsys, SHAPES, "custom_imports.imports=['os']")
    assert rc == 1 and line.startswith(
        "detcore: error: --set custom_imports.imports=['os']: custom_imports: detcore configs never import"
    )
