"""det-plugin-fpn: FPN and PAFPN necks for detcore."""

__version__ = "0.1.0"

from det_plugin_fpn.fpn import FPN  # noqa: E402
from det_plugin_fpn.pafpn import PAFPN  # noqa: E402

__all__ = ["FPN", "PAFPN", "__version__"]
