"""det-plugin-libra: Libra R-CNN's balanced feature pyramid and balanced samplers."""

from det_plugin_libra.bfp import BFP
from det_plugin_libra.samplers import InstanceBalancedPosSampler, IoUBalancedNegSampler

__version__ = "0.1.0"
__all__ = ["BFP", "InstanceBalancedPosSampler", "IoUBalancedNegSampler", "__version__"]
