"""``detcore plugin new NAME [--kind backbone|detector]``: write a ready-to-install plugin package.

``backbone`` (the default): a pyproject with the ``detcore.plugins`` entry point, one backbone
component, a hook implementation that registers it, and a test that builds it through the registry.
``detector``: a detector family: a CenterNet-style dense head, a single-stage detector, a loss, a
config on the shapes data extending detcore's shipped bases (shipped with the plugin, so others extend
it as ``NAME:configs/NAME_shapes.toml``) and a test that validates the config, trains and predicts.
The detector files come from ``detcore/cli/templates/detector_*.tmpl`` (``$name``, ``$cls``).
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from string import Template

from detcore import __version__
from detcore.errors import DetcoreError

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "det-plugin-{dashed}"
version = "0.1.0"
description = "A detcore plugin: {name}"
requires-python = ">=3.9"
dependencies = ["detcore>={detcore_version}"]

[project.entry-points."detcore.plugins"]
{name} = "det_plugin_{name}.plugin"

[tool.setuptools]
packages = ["det_plugin_{name}"]
"""

INIT = '''"""det-plugin-{dashed}: a detcore plugin."""

__version__ = "0.1.0"
'''

PLUGIN = '''"""Hook implementations: what this plugin adds to detcore's registry."""

from detcore.hookspecs import hookimpl

from det_plugin_{name}.backbone import {cls}


@hookimpl
def detcore_register_backbones():
    return {{"{cls}": {cls}}}
'''

BACKBONE = '''"""{cls}: a small convolutional backbone (replace with your own)."""

from __future__ import annotations

import torch
from torch import nn


class {cls}(nn.Module):
    """Images ``(B, in_channels, H, W)`` -> ``num_stages`` feature maps at strides 2, 4, 8, ...

    Each stage halves the resolution and has ``base_channels * 2**i`` channels.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 16, num_stages: int = 3) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        channels = in_channels
        for i in range(num_stages):
            out = base_channels * 2**i
            self.stages.append(
                nn.Sequential(nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU(inplace=True))
            )
            channels = out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return tuple(outs)
'''

TEST = """import torch

import detcore


def test_{name}_backbone_is_registered_and_builds():
    model = detcore.build("backbone", {{"type": "{cls}", "base_channels": 4, "num_stages": 2}})
    outs = model(torch.zeros(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 4, 16, 16), (1, 8, 8, 8)]
    entry = detcore.get_registry().get("backbone", "{cls}")
    assert entry.plugin == "{name}"
"""

README = """\
# det-plugin-{dashed}

A detcore plugin. Install it next to detcore and it registers the backbone `{cls}`:

    pip install -e .
    detcore plugins

Use it from a config:

    plugins = ["{name}"]
    [model.backbone]
    type = "{cls}"
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugin", help="plugin development tools")
    sub = p.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="write a ready-to-install plugin package")
    new.add_argument("name", help="short plugin name (a Python identifier, e.g. 'mybackbone')")
    new.add_argument(
        "--dir", default=".", help="where to create det-plugin-NAME/ (default: current directory)"
    )
    new.add_argument(
        "--kind", choices=KINDS, default=KINDS[0],
        help="backbone: one backbone component; detector: a detector family (head, detector, loss, "
             "shapes config, training test)",
    )
    new.set_defaults(func=run_new)


#: what ``--kind`` may scaffold; the first is the default
KINDS = ("backbone", "detector")

TEMPLATES = Path(__file__).resolve().parent / "templates"

DETECTOR_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "det-plugin-{dashed}"
version = "0.1.0"
description = "A detcore detector family: {name}"
requires-python = ">=3.9"
dependencies = ["detcore>={detcore_version}", "det-plugin-resnet", "det-plugin-fpn"]

[project.entry-points."detcore.plugins"]
{name} = "det_plugin_{name}.plugin"

[tool.setuptools]
packages = ["det_plugin_{name}"]

[tool.setuptools.package-data]
"det_plugin_{name}" = ["configs/*.toml"]
"""

DETECTOR_README = """\
# det-plugin-{dashed}

A detcore detector family: `{cls}` (a single-stage detector), `{cls}Head` (a CenterNet-style dense
head) and `{cls}HeatmapLoss`. The contract the head implements is docs/writing-a-detector.md.

    pip install -e .
    detcore plugins
    pytest tests
    detcore train det_plugin_{name}/configs/{name}_shapes.toml

Other configs extend the shipped one: `extends = ["{name}:configs/{name}_shapes.toml"]`.
"""


def scaffold(name: str, parent: Path, kind: str = KINDS[0]) -> Path:
    """Write ``det-plugin-<name>/`` under ``parent`` (a ``kind`` from :data:`KINDS`) and return its path."""
    if kind not in KINDS:
        raise DetcoreError(f"plugin kind '{kind}' is not one of {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise DetcoreError(
            f"plugin name '{name}' must be a lowercase Python identifier (letters, digits, underscores)"
        )
    dashed = name.replace("_", "-")
    base = "".join(part.capitalize() for part in name.split("_"))
    cls = base + "Backbone" if kind == "backbone" else base
    root = parent / f"det-plugin-{dashed}"
    if root.exists():
        raise DetcoreError(f"{root} already exists; choose another name or --dir")
    values = {"name": name, "dashed": dashed, "cls": cls, "detcore_version": __version__}
    if kind == "detector":
        return _scaffold_detector(root, values)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"det_plugin_{name}/__init__.py": INIT,
        f"det_plugin_{name}/plugin.py": PLUGIN,
        f"det_plugin_{name}/backbone.py": BACKBONE,
        f"tests/test_{name}.py": TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return root


def _scaffold_detector(root: Path, values: dict[str, str]) -> Path:
    name = values["name"]
    files = {
        "pyproject.toml": DETECTOR_PYPROJECT.format(**values),
        "README.md": DETECTOR_README.format(**values),
        f"det_plugin_{name}/__init__.py": INIT.format(**values),
    }
    templated = {
        f"det_plugin_{name}/plugin.py": "detector_plugin.py.tmpl",
        f"det_plugin_{name}/head.py": "detector_head.py.tmpl",
        f"det_plugin_{name}/detector.py": "detector_detector.py.tmpl",
        f"det_plugin_{name}/loss.py": "detector_loss.py.tmpl",
        f"det_plugin_{name}/configs/{name}_shapes.toml": "detector_config.toml.tmpl",
        f"tests/test_{name}.py": "detector_test.py.tmpl",
    }
    for rel, template in templated.items():
        files[rel] = Template((TEMPLATES / template).read_text()).substitute(values)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_new(args: argparse.Namespace) -> int:
    root = scaffold(args.name, Path(args.dir), kind=getattr(args, "kind", KINDS[0]))
    print(f"wrote {root}")
    print(f"install it with: pip install -e {root}")
    return 0
