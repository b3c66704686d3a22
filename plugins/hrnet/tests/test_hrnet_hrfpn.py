"""HRFPN: output levels' shapes and channels, the concatenate-reduce-pool computation on hand-set
weights (against a reshape-mean / reshape-max pooling), the stride option and input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from det_plugin_hrnet import HRFPN
from torch import nn

import detcore

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(channels, size=(32, 48), batch=2):
    h, w = size
    return [torch.rand(batch, c, h >> i, w >> i) for i, c in enumerate(channels)]


def test_levels_shapes_and_channels():
    neck = detcore.build("neck", {"type": "HRFPN", "in_channels": [4, 8, 16, 32], "out_channels": 12})
    outs = neck(_inputs([4, 8, 16, 32]))
    assert [tuple(o.shape) for o in outs] == [(2, 12, 32 >> k, 48 >> k) for k in range(5)]
    assert neck.reduction_conv.conv.in_channels == 60 and neck.reduction_conv.conv.kernel_size == (1, 1)
    assert len(neck.fpn_convs) == 5 and all(c.conv.kernel_size == (3, 3) for c in neck.fpn_convs)
    # plain convs with bias, no norm and no activation (the reference's keys: conv.weight, conv.bias)
    assert sorted(neck.state_dict())[:2] == ["fpn_convs.0.conv.bias", "fpn_convs.0.conv.weight"]
    assert neck.reduction_conv.norm is None and not neck.reduction_conv.with_activation


def _identity_weights(neck: HRFPN) -> None:
    """reduction_conv: the identity on the concatenated channels; fpn_convs: centre-tap identities."""
    with torch.no_grad():
        c = neck.out_channels
        neck.reduction_conv.conv.weight.copy_(torch.eye(c)[:, :, None, None])
        neck.reduction_conv.conv.bias.zero_()
        for conv in neck.fpn_convs:
            conv.conv.weight.zero_()
            conv.conv.weight[:, :, 1, 1] = torch.eye(c)
            conv.conv.bias.zero_()


def _pool(x: torch.Tensor, k: int, reduce: str) -> torch.Tensor:
    b, c, h, w = x.shape
    blocks = x[:, :, : h // k * k, : w // k * k].reshape(b, c, h // k, k, w // k, k)
    return blocks.mean(dim=(3, 5)) if reduce == "mean" else blocks.amax(dim=(3, 5))


@pytest.mark.parametrize(("pooling_type", "reduce"), [("AVG", "mean"), ("MAX", "max")])
def test_concatenate_reduce_and_pool_on_identity_weights(pooling_type, reduce):
    """With identity convs, level 0 is [x0, up2(x1), up4(x2)] (bilinear, by the scale factor) and level
    k the k-fold 2x2 pooling of level 0."""
    neck = HRFPN([1, 2, 1], out_channels=4, num_outs=3, pooling_type=pooling_type)
    _identity_weights(neck)
    x = _inputs([1, 2, 1], size=(16, 24), batch=1)
    with torch.no_grad():
        outs = neck(x)
    level0 = torch.cat([x[0]] + [F.interpolate(x[i], scale_factor=2**i, mode="bilinear", align_corners=False)
                                  for i in (1, 2)], dim=1)  # fmt: skip
    torch.testing.assert_close(outs[0], level0)
    torch.testing.assert_close(outs[1], _pool(level0, 2, reduce))
    torch.testing.assert_close(outs[2], _pool(level0, 4, reduce))


def test_reduction_mixes_the_branches_linearly():
    """A reduction weight summing the channels: level 0 = x0 + up(x1) (+ the conv bias)."""
    neck = HRFPN([1, 1], out_channels=1, num_outs=1)
    _identity_weights(neck)
    with torch.no_grad():
        neck.reduction_conv.conv.weight.fill_(1.0)
        neck.reduction_conv.conv.bias.fill_(0.25)
    x0, x1 = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 2, 2)
    up = F.interpolate(x1, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(neck([x0, x1])[0], x0 + up + 0.25)


def test_stride_two_output_convs_halve_every_level():
    neck = HRFPN([4, 8], out_channels=8, num_outs=3, stride=2)
    outs = neck(_inputs([4, 8], size=(32, 32)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4)]


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain, cp = HRFPN([4, 8], 8, num_outs=2), HRFPN([4, 8], 8, num_outs=2, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = [t.requires_grad_() for t in _inputs([4, 8], size=(16, 16))]
    grads = []
    for neck in (plain, cp):
        out = neck(x)
        sum(o.square().sum() for o in out).backward()
        grads.append(([o.detach() for o in out], neck.fpn_convs[1].conv.weight.grad.clone()))
    for a, b in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_group_norm_convs_have_no_bias():
    neck = HRFPN([4, 8], 8, norm_cfg={"type": "GN", "num_groups": 2})
    assert isinstance(neck.reduction_conv.norm, nn.GroupNorm) and neck.fpn_convs[0].conv.bias is None


def test_bad_inputs_are_named():
    neck = HRFPN([4, 8], 8)
    with pytest.raises(ValueError, match=r"HRFPN: input 1 must be \(B, 8, H, W\)"):
        neck(_inputs([4, 6]))
    with pytest.raises(ValueError, match="expected 2 input maps, got 3"):
        neck(_inputs([4, 8, 16]))
    with pytest.raises(ValueError, match="pooling_type must be one of"):
        HRFPN([4], 8, pooling_type="SUM")
