"""Helpers for plugin test suites (detcore's own and third parties').

Functions to import (``from detcore.testing import ...``):

- reference checkpoint layouts (:mod:`detcore.testing.reference`): :func:`read_reference_keys`,
  :func:`reference_keys_or_skip`, :func:`state_dict_layout`, :func:`write_reference_checkpoint`,
  :func:`check_reference_checkpoint_loads`, :func:`check_reference_layout` (with :func:`first_differences`);
- inputs and checks for heads and detectors (:mod:`detcore.testing.batches`): :func:`two_image_batch`,
  :func:`fake_batch` (any size, boxes, labels, masks), :func:`check_detections`, and
  :func:`load_validated_config`;
- fake plugins on a private manager (:mod:`detcore.testing.fake_plugins`): :func:`make_plugin_module`,
  :class:`FakePlugins`;
- training checks (:mod:`detcore.testing.training`): :func:`train_steps`, :func:`check_loss_falls`
  (a few steps on fixed batches lower the losses), :func:`shapes_batches` and
  :func:`shapes_config_tables` (a shapes config's data tables at a small size) with
  :func:`first_batch`;
- :func:`torch_threads`, a context manager for torch's intra-op thread count.

Fixtures, with no import (:mod:`detcore.testing.pytest_plugin`, registered as the pytest plugin
``detcore`` through the ``pytest11`` entry point): ``one_thread``, ``plugin_env`` and the ini option
``detcore_num_threads``.
"""

from detcore.testing.batches import check_detections, fake_batch, load_validated_config, two_image_batch
from detcore.testing.fake_plugins import FakePlugins, make_plugin_module
from detcore.testing.reference import (
    KEYS_ENV,
    ReferenceKeys,
    check_reference_checkpoint_loads,
    check_reference_layout,
    first_differences,
    read_reference_keys,
    reference_keys_dir,
    reference_keys_or_skip,
    state_dict_layout,
    write_reference_checkpoint,
)
from detcore.testing.threads import torch_threads
from detcore.testing.training import (
    check_loss_falls,
    first_batch,
    shapes_batches,
    shapes_config_tables,
    train_steps,
)

__all__ = [
    "KEYS_ENV",
    "FakePlugins",
    "ReferenceKeys",
    "check_detections",
    "check_loss_falls",
    "check_reference_checkpoint_loads",
    "check_reference_layout",
    "fake_batch",
    "first_differences",
    "first_batch",
    "load_validated_config",
    "make_plugin_module",
    "read_reference_keys",
    "reference_keys_dir",
    "reference_keys_or_skip",
    "shapes_batches",
    "shapes_config_tables",
    "state_dict_layout",
    "torch_threads",
    "train_steps",
    "two_image_batch",
    "write_reference_checkpoint",
]
