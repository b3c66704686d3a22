"""detcore-native: compiled kernels behind :mod:`detcore.ops`.

Importing this package loads the extension, which registers the operators ``torch.ops.detcore.*``
(CPU always, CUDA when built with it), then registers their fake kernels (for torch.compile/export)
and autograd formulas. Models do not import it: they call :mod:`detcore.ops`.
"""

import torch  # noqa: F401  (loads libtorch before the extension)

from . import (
    _C,
    _registration,  # noqa: F401
)

__version__ = "0.1.0"


def cuda_built() -> bool:
    """True when the CUDA kernels were compiled into this build."""
    return bool(_C.cuda_built())


__all__ = ["cuda_built", "__version__"]
