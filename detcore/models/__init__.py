"""The shared model library: layers, weight init, checkpoint loading (more re-exported below)."""

from detcore.models.checkpoint_io import load_checkpoint, load_state_dict, load_url_to_cache, state_dict_from
from detcore.models.init import (
    BaseModule,
    ModuleList,
    Sequential,
    bias_init_with_prob,
    caffe2_xavier_init,
    constant_init,
    initialize,
    kaiming_init,
    normal_init,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)
from detcore.models.layers import (
    ConvModule,
    FrozenBatchNorm2d,
    build_activation_layer,
    build_conv_layer,
    build_norm_layer,
    build_upsample_layer,
    is_norm,
)
