"""det-plugin-fcos: the FCOS detector and its anchor-free head for detcore."""

__version__ = "0.1.0"

from det_plugin_fcos.fcos import FCOS  # noqa: E402
from det_plugin_fcos.fcos_head import FCOSHead  # noqa: E402

__all__ = ["FCOS", "FCOSHead", "__version__"]
