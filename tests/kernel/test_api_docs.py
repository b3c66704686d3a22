"""The API reference (docs/api, Sphinx autodoc) builds with warnings as errors and documents every
public name of the model library where it is defined, each with a docstring."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: packages whose ``__all__`` is public API; each name must have a docstring
PUBLIC = [
    "detcore.models", "detcore.models.losses", "detcore.models.layers", "detcore.models.task_utils",
    "detcore.models.dense_heads", "detcore.models.detectors", "detcore.models.roi_heads",
    "detcore.models.necks",
    "detcore.structures", "detcore.testing", "detcore.ops",
]


def _public_objects(package: str):
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize("package", PUBLIC)
def test_every_public_name_has_a_docstring(package):
    missing = [name for name, obj in _public_objects(package) if not inspect.getdoc(obj)]
    assert not missing, f"{package}: no docstring on {missing}"


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("api_html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs" / "api"),
         str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-6000:]}"
    return out


def test_reference_documents_every_name_of_detcore_models(html):
    anchors = set()
    for page in html.glob("*.html"):
        anchors.update(re.findall(r'id="(detcore\.[\w.]+)"', page.read_text()))
    absent = [
        f"{name} ({obj.__module__}.{obj.__qualname__})" for name, obj in _public_objects("detcore.models")
        if f"{obj.__module__}.{obj.__qualname__}" not in anchors
    ]
    assert not absent, f"not in the API reference: {absent}"
    # the losses' shared call signature is on the BaseLoss entry
    losses = (html / "losses.html").read_text()
    assert "reduction_override" in losses and "avg_factor" in losses


def test_readme_links_the_reference():
    assert "docs/api" in (ROOT / "README.md").read_text()
