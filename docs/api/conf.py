"""Sphinx configuration of detcore's API reference (docs/api): autodoc over the docstrings.

Build: ``sphinx-build -W -b html docs/api <out>`` (warnings are errors; tests/kernel/test_api_docs.py
runs it). Nothing is downloaded: no intersphinx, the bundled alabaster theme.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

project = "detcore"
author = "detcore contributors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
# the signatures' annotations are shown in the signature, not resolved into cross-references
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Inputs", "params_style"), ("Outputs", "returns_style")]
suppress_warnings = ["ref.python"]  # several re-exports of one class: ambiguous short cross-references
