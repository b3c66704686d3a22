"""detcore: a minimal object-detection kernel that detector families plug into."""

__version__ = "0.1.0"

from detcore.registry import build, get_registry  # noqa: E402

__all__ = ["__version__", "build", "get_registry"]
