"""det-plugin-rfcn: R-FCN (Dai et al., NIPS 2016) on detcore's two-stage machinery."""

from det_plugin_rfcn.rfcn_head import RFCNHead, RFCNRoIHead

__version__ = "0.1.0"
__all__ = ["RFCNHead", "RFCNRoIHead", "__version__"]
