"""Trident blocks: three branches sharing one set of parameters, each equal to a dilated conv of the
same weight; the TridentResNet against plain ResNets with the branch's dilation in res4; the branch
selection at test time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("det_plugin_tridentnet", reason="det-plugin-tridentnet is not installed")
from det_plugin_resnet import ResNet  # noqa: E402
from det_plugin_tridentnet import TridentConv, TridentResNet  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trident_conv_branches_share_one_weight_and_equal_dilated_convs():
    torch.manual_seed(0)
    conv = TridentConv(4, 6, 3, stride=1, trident_dilations=(1, 2, 3), test_branch_idx=1, bias=True)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    xs = [torch.randn(2, 4, 11, 13) for _ in range(3)]
    outs = conv(xs)
    for x, out, d in zip(xs, outs, (1, 2, 3)):
        expected = F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d)
        assert out.shape == (2, 6, 11, 13)
        assert torch.allclose(out, expected, atol=1e-6)
    # one parameter: the gradient is the sum of the branches' gradients
    sum(o.sum() for o in outs).backward()
    expected_grad = torch.zeros_like(conv.weight)
    for x, d in zip(xs, (1, 2, 3)):
        w = conv.weight.detach().clone().requires_grad_(True)
        F.conv2d(x, w, conv.bias.detach(), padding=d, dilation=d).sum().backward()
        expected_grad += w.grad
    assert torch.allclose(conv.weight.grad, expected_grad, atol=1e-4)


def test_trident_conv_runs_only_the_test_branch_in_eval():
    torch.manual_seed(0)
    conv = TridentConv(3, 5, 3, stride=2, trident_dilations=(1, 2, 3), test_branch_idx=2).eval()
    x = torch.randn(1, 3, 12, 12)
    (out,) = conv([x])
    assert torch.allclose(out, F.conv2d(x, conv.weight, None, stride=2, padding=3, dilation=3), atol=1e-6)
    with pytest.raises(ValueError, match="3 inputs for 1 running branches"):
        conv([x, x, x])
    conv.test_branch_idx = -1
    assert len(conv([x, x, x])) == 3
    with pytest.raises(ValueError, match="test_branch_idx"):
        TridentConv(3, 5, trident_dilations=(1, 2), test_branch_idx=2)


def _tiny(cls=TridentResNet, **kwargs) -> torch.nn.Module:
    common = dict(depth=50, base_channels=4, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
                  out_indices=(2,),
                  frozen_stages=-1, norm_cfg={"type": "GN", "num_groups": 2}, norm_eval=False,
                  style="caffe")  # fmt: skip
    common.update(kwargs)
    return cls(**common)


def test_trident_resnet_has_the_plain_resnets_parameters():
    trident, plain = _tiny(), _tiny(ResNet)
    assert [(k, v.shape) for k, v in trident.state_dict().items()] == [
        (k, v.shape) for k, v in plain.state_dict().items()
    ]
    assert type(trident.layer3[0].conv2).__name__ == "TridentConv"
    assert type(trident.layer2[0].conv2).__name__ == "Conv2d"


def test_each_branch_is_the_resnet_with_that_dilation_in_res4():
    """Training mode: (3B, C, H, W), branch-major; branch b equals a plain ResNet whose res4 is dilated
    by trident_dilations[b], with the same weights. Eval mode with test_branch_idx = 1: (B, ...) equal
    to branch 1; with -1 all three branches."""
    torch.manual_seed(0)
    trident = _tiny()
    trident.init_weights()
    x = torch.randn(2, 3, 64, 48)
    trident.train()
    with torch.no_grad():
        out = trident(x)[0]
    assert out.shape == (6, 64, 4, 3)
    for b, d in enumerate((1, 2, 3)):
        plain = _tiny(ResNet, dilations=(1, 1, d))
        plain.load_state_dict(trident.state_dict())
        plain.eval()
        with torch.no_grad():
            expected = plain(x)[0]
        assert torch.allclose(out[2 * b : 2 * b + 2], expected, atol=1e-5), f"branch {b}"
    trident.eval()
    with torch.no_grad():
        test_out = trident(x)[0]
    assert test_out.shape == (2, 64, 4, 3)
    assert torch.allclose(test_out, out[2:4], atol=1e-5)
    all_branches = _tiny(test_branch_idx=-1)
    all_branches.load_state_dict(trident.state_dict())
    all_branches.eval()
    with torch.no_grad():
        assert torch.allclose(all_branches(x)[0], out, atol=1e-5)


def test_bad_trident_settings_are_refused():
    with pytest.raises(ValueError, match="one entry per branch"):
        _tiny(trident_dilations=(1, 2))
    with pytest.raises(ValueError, match="test_branch_idx"):
        _tiny(test_branch_idx=3)
    with pytest.raises(ValueError, match="Bottleneck"):
        _tiny(depth=18)
