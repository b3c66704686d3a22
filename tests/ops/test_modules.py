"""nn.Module wrappers: parameter names (as the reference checkpoints), initialisation and forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from detcore import ops


def test_roi_modules_call_the_functions(backend):
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 5.0]])
    m = ops.RoIAlign((2, 3), 0.5, 2, False)
    torch.testing.assert_close(m(x, rois), ops.roi_align(x, rois, (2, 3), 0.5, 2, False))
    assert "aligned=False" in repr(m)
    torch.testing.assert_close(ops.RoIPool(2, 0.5)(x, rois), ops.roi_pool(x, rois, 2, 0.5))


def test_deform_conv_pack_names_and_zero_init(backend):
    m = ops.DeformConv2dPack(8, 4, 3, padding=1, deform_groups=2)
    names = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert names == {"weight": (4, 8, 3, 3), "conv_offset.weight": (36, 8, 3, 3), "conv_offset.bias": (36,)}
    x = torch.randn(1, 8, 6, 7)
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, padding=1), rtol=1e-5, atol=1e-5)
    # the reference ResNet-DCN checkpoint layout: conv2.conv_offset.weight (18, 512, 3, 3)
    assert tuple(ops.DeformConv2dPack(512, 512, 3, padding=1).conv_offset.weight.shape) == (18, 512, 3, 3)


def test_modulated_pack_names_and_zero_init(backend):
    m = ops.ModulatedDeformConv2dPack(4, 6, 3, padding=1)
    names = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert names == {
        "weight": (6, 4, 3, 3),
        "bias": (6,),
        "conv_offset.weight": (27, 4, 3, 3),
        "conv_offset.bias": (27,),
    }
    x = torch.randn(2, 4, 5, 5)
    # zero offsets and mask = sigmoid(0) = 0.5
    torch.testing.assert_close(
        m(x), 0.5 * F.conv2d(x, m.weight, padding=1) + m.bias.view(1, -1, 1, 1), rtol=1e-5, atol=1e-5
    )
    out = m(x)
    out.sum().backward()
    assert m.conv_offset.weight.grad is not None and m.weight.grad is not None


def test_deform_conv_module_with_offset(backend):
    m = ops.DeformConv2d(2, 3, (1, 1), bias=True)
    assert set(dict(m.named_parameters())) == {"weight", "bias"}
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(m(x, torch.zeros(1, 2, 4, 4)), F.conv2d(x, m.weight, m.bias))
    assert set(dict(ops.ModulatedDeformConv2d(2, 3, 3, bias=False).named_parameters())) == {"weight"}
