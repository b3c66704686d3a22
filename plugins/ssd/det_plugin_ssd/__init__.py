"""det-plugin-ssd: SSD (Liu et al., 2016) for detcore: SSDVGG, SSDNeck (with L2Norm) and SSDHead."""

__version__ = "0.1.0"

from det_plugin_ssd.ssd_head import SSDHead  # noqa: E402
from det_plugin_ssd.ssd_neck import L2Norm, SSDNeck  # noqa: E402
from det_plugin_ssd.vgg import SSDVGG  # noqa: E402

__all__ = ["L2Norm", "SSDHead", "SSDNeck", "SSDVGG", "__version__"]
