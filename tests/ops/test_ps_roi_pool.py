"""Position-sensitive RoI pooling (R-FCN): hand-computed bins and channel groups under each backend, native vs
reference values and gradients, gradcheck and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from detcore import ops
from detcore.ops import native_available

needs_native = pytest.mark.skipif(not native_available(), reason="detcore_native is not installed")


def test_bin_ij_averages_channel_group_ij(backend):
    # 2 output channels, k = 2: input channel (d * 2 + i) * 2 + j holds the constant 100 * d + 10 * i + j,
    # so every bin must return the constant of its own group, whatever the window.
    k, d = 2, 2
    consts = torch.tensor([100.0 * dd + 10 * i + j for dd in range(d) for i in range(k) for j in range(k)])
    x = consts.view(1, d * k * k, 1, 1).expand(1, d * k * k, 6, 6).contiguous()
    rois = torch.tensor([[0, 0.0, 0.0, 5.0, 5.0], [0, 1.0, 2.0, 3.0, 4.0]])
    out = ops.ps_roi_pool(x, rois, k, 1.0)
    want = consts.view(1, d, k, k).expand(2, d, k, k)
    torch.testing.assert_close(out, want)


def test_hand_computed_windows(backend):
    # one group channel per bin (d = 1, k = 2) on a 6x6 map holding 0..35 row-major.
    x = torch.arange(36.0).view(1, 1, 6, 6).repeat(1, 4, 1, 1)
    # roi (0.4, 0.6, 3.2, 2.6): rounded (0, 1, 3, 3), +1 -> spans x [0, 4), y [1, 4): w 4, h 3
    # bins: h 1.5 -> rows [floor(1), ceil(2.5)) = [1, 3), [floor(2.5), ceil(4)) = [2, 4);
    # w 2 -> columns [0, 2), [2, 4)
    rois = torch.tensor([[0, 0.4, 0.6, 3.2, 2.6]])
    out = ops.ps_roi_pool(x, rois, 2, 1.0)[0, 0]
    plane = torch.arange(36.0).view(6, 6)
    want = torch.tensor(
        [
            [plane[1:3, 0:2].mean(), plane[1:3, 2:4].mean()],
            [plane[2:4, 0:2].mean(), plane[2:4, 2:4].mean()],
        ]
    )
    torch.testing.assert_close(out, want)
    # spatial_scale 0.5 on rounded corners: (0 * .5, 1 * .5) to (4 * .5, 4 * .5) -> x [0, 2), y [0.5, 2)
    out = ops.ps_roi_pool(x, rois, 2, 0.5)[0, 0]
    want = torch.tensor(
        [[plane[0:2, 0:1].mean(), plane[0:2, 1:2].mean()], [plane[1:2, 0:1].mean(), plane[1:2, 1:2].mean()]]
    )
    torch.testing.assert_close(out, want)


def test_bins_outside_the_map_are_zero(backend):
    x = torch.ones(1, 4, 5, 5)
    rois = torch.tensor([[0, 20.0, 20.0, 30.0, 30.0], [0, 3.0, 3.0, 10.0, 10.0]])
    out = ops.ps_roi_pool(x, rois, 2, 1.0)
    assert torch.all(out[0] == 0)
    assert out[1, 0, 0, 0] == 1 and out[1, 0, 1, 1] == 0  # bin (1, 1) starts at 3 + 4 = 7 > 5


def test_gradcheck_ps_roi_pool(backend):
    x = torch.randn(2, 9, 7, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 1.0, 2.0, 8.0, 9.0], [1, 0.4, 0.6, 20.0, 30.0], [0, 5.0, 5.0, 5.0, 5.0]]
    ).double()
    assert gradcheck(lambda a: ops.ps_roi_pool(a, rois, 3, 0.5), (x,))
    x2 = torch.randn(1, 2 * 6, 5, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a: ops.ps_roi_pool(a, rois[:1], (2, 3), 1.0), (x2,))


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_matches_reference(force, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3 * 49, 19, 23, generator=gen, dtype=dtype)
    xy = torch.rand(40, 2, generator=gen, dtype=dtype) * 180 - 20
    wh = torch.rand(40, 2, generator=gen, dtype=dtype) * 120
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).to(dtype), xy, xy + wh], dim=1)
    rois[::9, 3:] = rois[::9, 1:3]  # degenerate rois
    res = {}
    for name in ("native", "reference"):
        force(name)
        xi = x.clone().requires_grad_()
        out = ops.ps_roi_pool(xi, rois, 7, 0.125)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * g).sum().backward()
        res[name] = (out.detach(), xi.grad)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, b in zip(res["native"], res["reference"]):
        torch.testing.assert_close(a, b, **tol)


def test_module_and_errors(backend):
    layer = ops.PSRoIPool(3, 0.25)
    x = torch.randn(1, 18, 8, 8)
    rois = torch.tensor([[0, 0.0, 0.0, 20.0, 24.0]])
    assert layer(x, rois).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="output_dim \\* 3 \\* 3"):
        ops.ps_roi_pool(torch.randn(1, 10, 8, 8), rois, 3)
    with pytest.raises(ValueError, match="must be finite"):
        ops.ps_roi_pool(x, torch.tensor([[0, float("nan"), 0.0, 2.0, 2.0]]), 3)


@pytest.mark.skipif(
    not (native_available() and torch.cuda.is_available()), reason="needs a GPU and detcore_native"
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(force, dtype):
    """Run by scripts/gpu_check.sh: the CUDA kernels against the CPU kernels, values and gradients."""
    import detcore_native

    if not detcore_native.cuda_built():
        pytest.skip("detcore_native was built without CUDA")
    force("native")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4 * 9, 21, 18, generator=gen, dtype=dtype)
    xy = torch.rand(30, 2, generator=gen, dtype=dtype) * 150 - 10
    rois = torch.cat([torch.randint(0, 2, (30, 1), generator=gen).to(dtype), xy, xy + 40], dim=1)
    res = {}
    for dev in ("cpu", "cuda"):
        xi = x.to(dev).requires_grad_()
        out = ops.ps_roi_pool(xi, rois.to(dev), 3, 0.125)
        (out * out.detach()).sum().backward()
        res[dev] = [out.detach().cpu(), xi.grad.cpu()]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for a, b in zip(res["cpu"], res["cuda"]):
        torch.testing.assert_close(a, b, **tol)


@needs_native
def test_opcheck_schema_fake_and_autograd_registration():
    """torch.library.opcheck: schema, fake kernel (torch.compile / export), autograd registration."""
    x = torch.randn(2, 8, 8, 9, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0], [1, 0.0, 2.0, 9.0, 5.0]], dtype=torch.float64)
    result = torch.library.opcheck(torch.ops.detcore.ps_roi_pool.default, (x, rois, 0.5, 2, 2))
    assert set(result.values()) == {"SUCCESS"}, result
