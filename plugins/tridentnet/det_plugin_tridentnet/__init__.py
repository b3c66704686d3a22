"""det-plugin-tridentnet: TridentNet (trident blocks, TridentResNet, TridentFasterRCNN)."""

from det_plugin_tridentnet.trident_faster_rcnn import TridentFasterRCNN, TridentRoIHead
from det_plugin_tridentnet.trident_resnet import TridentBottleneck, TridentConv, TridentResNet

__version__ = "0.1.0"
__all__ = [
    "TridentBottleneck", "TridentConv", "TridentFasterRCNN", "TridentResNet", "TridentRoIHead", "__version__",
]
