"""Fuzzing the config reader and validator with mutated shipped configs: every outcome is success or a
clean, located detcore error (never another exception)."""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter
from pathlib import Path

from detcore.config import load_config, validate_config
from detcore.errors import DetcoreError, describe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
VALUES = ['"text"', "0", "-1", "1.5", "true", '[1, "a"]', "{ a = 1 }", "[]", '""', "1e400", "nan", "[[1]]"]
_ASSIGNMENT = re.compile(r"^(\s*[A-Za-z0-9_\-\.\"]+\s*=\s*)(.+)$")


def _mutate(text: str, rng: random.Random) -> tuple[str, str]:
    """One random mutation of a config's text and its name."""
    lines = text.splitlines()
    kind = rng.choice(["delete", "retype", "duplicate_table", "insert_bytes", "truncate", "retype", "delete"])
    assignments = [i for i, line in enumerate(lines) if _ASSIGNMENT.match(line)]
    tables = [i for i, line in enumerate(lines) if line.startswith("[")]
    if kind == "delete" and assignments:
        del lines[rng.choice(assignments)]
    elif kind == "retype" and assignments:
        i = rng.choice(assignments)
        lines[i] = _ASSIGNMENT.sub(lambda m: m.group(1) + rng.choice(VALUES), lines[i])
    elif kind == "duplicate_table" and tables:
        start = rng.choice(tables)
        end = next((j for j in tables if j > start), len(lines))
        lines += lines[start:end]
    elif kind == "insert_bytes":
        data = text.encode()
        at = rng.randrange(len(data) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        return (data[:at] + junk + data[at:]).decode("latin-1"), kind
    elif kind == "truncate":
        return text[: rng.randrange(len(text))], kind
    return "\n".join(lines) + "\n", kind


def test_mutated_shipped_configs_give_success_or_a_clean_config_error(tmp_path):
    tree = tmp_path / "configs"
    shutil.copytree(CONFIGS, tree)  # mutated files sit beside their originals, so extends resolve
    leaves = sorted(p for p in tree.glob("**/*.toml") if "_base_" not in p.parts)
    rng = random.Random(17)
    outcomes: Counter[str] = Counter()
    for n in range(300):
        source = rng.choice(leaves)
        text, kind = _mutate(source.read_text(), rng)
        mutated = source.with_name(f"fuzz_{n}.toml")
        mutated.write_bytes(text.encode("latin-1", "replace") if kind == "insert_bytes" else text.encode())
        try:
            validate_config(load_config(mutated))
            outcomes["ok"] += 1
        except DetcoreError as exc:
            line = describe(exc)
            assert "Traceback" not in line, line
            assert line.split(": ", 1)[0].endswith(".toml") or line.startswith("--set"), (kind, line)
            outcomes["config error"] += 1
        finally:
            mutated.unlink()
    assert sum(outcomes.values()) == 300
    assert outcomes["ok"] > 20 and outcomes["config error"] > 100, outcomes  # both kinds of outcome occur
