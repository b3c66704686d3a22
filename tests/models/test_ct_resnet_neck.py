"""CTResNetNeck: layout and sizes, the reference's bilinear deconv init against hand-computed values,
and the upsampling it gives."""

from __future__ import annotations

import pytest
import torch

import detcore
from detcore.models.necks import CTResNetNeck


def test_layout_and_output_size():
    neck = detcore.build("neck", {"type": "CTResNetNeck", "in_channel": 16, "num_deconv_filters": [8, 4],
                                  "num_deconv_kernels": [4, 4], "use_dcn": False})
    keys = [k for k in neck.state_dict() if k.endswith("weight")]
    assert keys == ["deconv_layers.0.conv.weight", "deconv_layers.0.bn.weight", "deconv_layers.1.conv.weight",
                    "deconv_layers.1.bn.weight", "deconv_layers.2.conv.weight", "deconv_layers.2.bn.weight",
                    "deconv_layers.3.conv.weight", "deconv_layers.3.bn.weight"]
    assert neck.deconv_layers[1].conv.weight.shape == (8, 8, 4, 4)  # ConvTranspose2d (in, out, k, k)
    assert neck.deconv_layers[1].conv.bias is None  # bias only without norm
    out = neck([torch.zeros(2, 3, 20, 20), torch.randn(2, 16, 5, 6)])
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == (2, 4, 20, 24)
    with pytest.raises(ValueError, match="2 num_deconv_filters but 1 num_deconv_kernels"):
        CTResNetNeck(16, (8, 4), (4,))


def test_bilinear_deconv_init_hand_computed():
    torch.manual_seed(0)
    neck = CTResNetNeck(4, (3,), (4,), use_dcn=False)
    neck.init_weights()
    w = neck.deconv_layers[1].conv.weight
    # k = 4: f = 2, c = 0.75, 1 - |i / 2 - 0.75| = 0.25, 0.75, 0.75, 0.25
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for ch in range(3):
        assert torch.allclose(w[ch, 0], row[:, None] * row[None, :])
    assert not torch.allclose(w[0, 1], w[0, 0])  # other output channels keep the reset values
    bn = neck.deconv_layers[1].bn
    assert bool((bn.weight == 1).all()) and bool((bn.bias == 0).all())


def test_bilinear_kernel_upsamples_a_constant_map_to_a_constant_interior():
    deconv = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, bias=False)
    from detcore.models.necks import fill_bilinear_deconv_

    fill_bilinear_deconv_(deconv)
    with torch.no_grad():
        out = deconv(torch.ones(1, 1, 4, 4))
    assert out.shape == (1, 1, 8, 8)
    # every interior output pixel receives two taps per axis: (0.25 + 0.75)^2 = 1
    assert torch.allclose(out[0, 0, 1:-1, 1:-1], torch.ones(6, 6))
    assert float(out[0, 0, 0, 0]) == pytest.approx(0.75 * 0.75)


def test_dcn_variant_runs():
    neck = CTResNetNeck(8, (4,), (4,), use_dcn=True)
    assert type(neck.deconv_layers[0].conv).__name__ == "ModulatedDeformConv2dPack"
    assert neck([torch.randn(1, 8, 6, 6)])[0].shape == (1, 4, 12, 12)
