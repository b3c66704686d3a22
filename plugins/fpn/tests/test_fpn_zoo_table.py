"""docs/model-zoo-components.md: its tables are what ``benchmarks/backbones.py --table`` computes, and
their counts agree with the reference's published figures:

- the key lists' first lines (whole-model parameter counts) and their ``backbone.*`` + ``neck.*``
  entries, summed here from the shapes;
- the reference manual's ``get_flops`` example, RetinaNet R50-FPN "Params: 37.74 M" (trainable
  parameters, with the config's ``frozen_stages = 1``).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import detcore

pytest.importorskip("det_plugin_resnet")

REPO_ROOT = Path(__file__).resolve().parents[3]
KEY_DIR = REPO_ROOT.parent / "shared" / "reference" / "checkpoint-keys"
DOC = REPO_ROOT / "docs" / "model-zoo-components.md"
SCRIPT = REPO_ROOT / "benchmarks" / "backbones.py"
_LINE = re.compile(r"^(\S+) \(([\d, ]*)\)$")
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

needs_keys = pytest.mark.skipif(not KEY_DIR.is_dir(), reason=f"reference key lists not found at {KEY_DIR}")


def parameter_sum(name: str, prefixes: tuple[str, ...] | None = None) -> int:
    """Sum of the parameter (not buffer) shapes of key list ``name``, optionally under ``prefixes``."""
    total = 0
    for line in (KEY_DIR / f"{name}.txt").read_text().splitlines()[1:]:
        m = _LINE.match(line.strip())
        assert m, line
        key = m.group(1)
        if key.endswith(_BUFFERS) or (prefixes and not key.startswith(prefixes)):
            continue
        total += int(torch.Size(int(s) for s in m.group(2).replace(",", " ").split()).numel())
    return total


def published_total(name: str) -> int:
    first = (KEY_DIR / f"{name}.txt").read_text().splitlines()[0]
    m = re.search(r": (\d+) parameters", first)
    assert m, first
    return int(m.group(1))


def load_script():
    spec = importlib.util.spec_from_file_location("detcore_benchmark_backbones", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_rows() -> list[list[str]]:
    """Cells of the count table's rows (the rows naming a neck and five numbers)."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("FPN") and re.fullmatch(r"[\d,]+", cells[2]):
            rows.append(cells)
    return rows


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_doc_tables_are_the_script_output() -> None:
    script = load_script()
    text = DOC.read_text()
    assert script.count_table() in text
    assert script.shape_table((800, 1216)) in text
    assert script.backbone_table() in text


@needs_keys
def test_doc_counts_agree_with_the_reference_key_lists() -> None:
    rows = doc_rows()
    assert len(rows) == 10
    checked = 0
    for backbone, neck, nb, nn_, total, ref in rows:
        assert number(nb) + number(nn_) == number(total), backbone
        m = re.search(r"`([^`]+)`", ref)
        if not m:
            continue
        name = m.group(1)
        # the key list's own total is the sum of all its parameter shapes: the file is read right
        assert parameter_sum(name) == published_total(name)
        assert number(total) == parameter_sum(name, ("backbone.", "neck.")), (backbone, neck)
        checked += 1
    assert checked == 9


@needs_keys
def test_retinanet_r50_fpn_trainable_parameters_match_the_manuals_37_74_m() -> None:
    with torch.device("meta"):
        backbone = detcore.build("backbone", {"type": "ResNet", "depth": 50, "frozen_stages": 1})
        neck = detcore.build(
            "neck",
            {
                "type": "FPN",
                "in_channels": [256, 512, 1024, 2048],
                "out_channels": 256,
                "num_outs": 5,
                "start_level": 1,
                "add_extra_convs": "on_input",
            },
        )
    head = parameter_sum("retinanet_r50_fpn_1x_coco", ("bbox_head.",))
    trainable = sum(p.numel() for m in (backbone, neck) for p in m.parameters() if p.requires_grad) + head
    assert round(trainable / 1e6, 2) == 37.74
    total = sum(p.numel() for m in (backbone, neck) for p in m.parameters()) + head
    assert total == published_total("retinanet_r50_fpn_1x_coco") == 37_968_692
