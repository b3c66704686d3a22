"""det-plugin-m2det: M2Det's multi-level feature pyramid network (MLFPN) as a detcore neck."""

from det_plugin_m2det.ffm import FFMv1, FFMv2
from det_plugin_m2det.mlfpn import MLFPN
from det_plugin_m2det.sfam import SFAM, ChannelAttention
from det_plugin_m2det.tum import TUM

__version__ = "0.1.0"
__all__ = ["FFMv1", "FFMv2", "MLFPN", "SFAM", "TUM", "ChannelAttention", "__version__"]
