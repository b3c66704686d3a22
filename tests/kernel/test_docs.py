"""Every hook spec is documented in docs/writing-plugins.md with its exact signature."""

import inspect
from pathlib import Path

import pytest

from detcore import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"


def signature_text(func) -> str:
    sig = inspect.signature(func)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values() if p.name != "self")
    return f"{func.__name__}({params}) -> {sig.return_annotation}"


SPECS = [getattr(hookspecs, hook) for hook in hookspecs.COMPONENT_KINDS.values()] + [
    getattr(hookspecs.RunEventSpecs, name) for name in hookspecs.RUN_EVENTS
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda f: f.__name__)
def test_hook_spec_is_documented_with_its_signature(spec):
    assert f"`{signature_text(spec)}`" in DOC.read_text()


def test_every_spec_has_a_docstring():
    assert all(inspect.getdoc(spec) for spec in SPECS)


def test_run_events_cover_the_required_timepoints():
    required = {
        "before_run",
        "after_run",
        "before_train_epoch",
        "after_train_epoch",
        "before_train_iter",
        "after_train_iter",
        "before_val_epoch",
        "after_val_epoch",
        "before_val_iter",
        "after_val_iter",
        "before_test_epoch",
        "after_test_epoch",
        "before_save_checkpoint",
        "after_load_checkpoint",
    }
    assert required <= set(hookspecs.RUN_EVENTS)
