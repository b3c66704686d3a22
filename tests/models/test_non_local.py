"""NonLocal2d against a per-position computation: y_i = x_i + W_out sum_j w_ij g(x_j)."""

from __future__ import annotations

import math

import pytest
import torch

from detcore.models.layers import NonLocal2d


def slow_non_local(block: NonLocal2d, x: torch.Tensor) -> torch.Tensor:
    """One image, one output position at a time, with the 1x1 convs as matrix products."""
    def conv1x1(module, v):  # v: (C,) -> (C',)
        return module.conv.weight[:, :, 0, 0] @ v + (module.conv.bias if module.conv.bias is not None else 0)

    c, h, w = x.shape
    cols = [x[:, i, j] for i in range(h) for j in range(w)]
    g = [conv1x1(block.g, v) for v in cols]
    if block.mode == "gaussian":
        theta, phi = cols, cols
    else:
        theta = [conv1x1(block.theta, v) for v in cols]
        phi = [conv1x1(block.phi, v) for v in cols]
    out = torch.empty_like(x)
    n = len(cols)
    for p in range(n):
        scores = torch.stack([theta[p] @ phi[q] for q in range(n)])
        if block.mode == "dot_product":
            weights = scores / n
        else:
            if block.mode == "embedded_gaussian" and block.use_scale:
                scores = scores / math.sqrt(block.inter_channels)
            weights = scores.softmax(0)
        y = sum(weights[q] * g[q] for q in range(n))
        out[:, p // w, p % w] = cols[p] + conv1x1(block.conv_out, y)
    return out


@pytest.mark.parametrize(("mode", "use_scale"), [("embedded_gaussian", False), ("embedded_gaussian", True),
                                                 ("dot_product", False), ("gaussian", False)])  # fmt: skip
def test_matches_the_per_position_formula(mode, use_scale):
    torch.manual_seed(0)
    block = NonLocal2d(6, reduction=2, use_scale=use_scale, mode=mode)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 6, 3, 4)
    with torch.no_grad():
        got = block(x)
        for b in range(2):
            torch.testing.assert_close(got[b], slow_non_local(block, x[b]), rtol=1e-4, atol=1e-5)


def test_identity_at_init_and_reference_names():
    block = NonLocal2d(8, reduction=1, use_scale=False)
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(block(x), x)
    assert [k.rsplit(".", 2)[0] for k in block.state_dict()][::2] == ["g", "conv_out", "theta", "phi"]
    normed = NonLocal2d(8, norm_cfg={"type": "BN"})
    assert float(normed.conv_out.norm.weight.detach().abs().sum()) == 0.0  # the norm, not the conv, is zeroed
    assert "theta" not in dict(NonLocal2d(8, mode="gaussian").named_children())
    with pytest.raises(ValueError, match="mode"):
        NonLocal2d(8, mode="concat")
