"""det-plugin-hrnet: the HRNetV2 backbone and the HRFPN neck (Sun et al., 2019) for detcore."""

__version__ = "0.1.0"

from det_plugin_hrnet.hr_module import HRModule  # noqa: E402
from det_plugin_hrnet.hrfpn import HRFPN  # noqa: E402
from det_plugin_hrnet.hrnet import HRNet  # noqa: E402

__all__ = ["HRFPN", "HRModule", "HRNet", "__version__"]
