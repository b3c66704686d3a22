"""det-plugin-retinanet: the RetinaNet detector and its RetinaHead."""

from det_plugin_retinanet.detector import RetinaNet
from det_plugin_retinanet.retina_head import RetinaHead

__version__ = "0.1.0"
__all__ = ["RetinaHead", "RetinaNet", "__version__"]
