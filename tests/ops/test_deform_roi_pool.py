"""Deformable RoI pooling (DCN v1) and its modulated variant (DCNv2): hand-computed values under each backend,
native vs reference values and gradients, gradcheck, the Pack modules and bad input."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from detcore import ops
from detcore.ops import native_available

needs_native = pytest.mark.skipif(not native_available(), reason="detcore_native is not installed")


def _ramp(h: int = 10, w: int = 10, dtype=torch.float32) -> torch.Tensor:
    """(1, 2, h, w): channel 0 holds x, channel 1 holds 10 * y (bilinear sampling reproduces both exactly)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([xs, 10 * ys])[None]


def test_zero_offset_is_aligned_roi_align(backend):
    x = torch.randn(2, 3, 9, 11)
    rois = torch.tensor([[0, 1.2, 0.3, 7.7, 6.1], [1, -2.0, 3.0, 14.0, 12.0], [1, 3, 3, 3.4, 3.2]])
    for sr in (0, 2):
        got = ops.deform_roi_pool(x, rois, None, 3, 0.8, sr)
        want = ops.roi_align(x, rois, 3, 0.8, sr, aligned=True)
        torch.testing.assert_close(got, want)
        zeros = torch.zeros(3, 2, 3, 3)
        torch.testing.assert_close(ops.deform_roi_pool(x, rois, zeros, 3, 0.8, sr), want)


def test_offsets_move_bins_in_units_of_the_roi_size(backend):
    # roi (2, 2, 6, 6): start 1.5 after the -0.5 shift, size 4, 2x2 bins of 2 px, one sample per bin at the
    # bin centre: x = 2.5 and 4.5. offset_x = 0.25 with gamma 0.1 moves x by 0.1 * 4 * 0.25 = 0.1 px;
    # offset_y = -0.5 moves y by 0.1 * 4 * -0.5 = -0.2 px (channel 1 holds 10 * y: -2).
    x = _ramp()
    rois = torch.tensor([[0, 2.0, 2.0, 6.0, 6.0]])
    offset = torch.zeros(1, 2, 2, 2)
    offset[:, 0] = 0.25
    offset[:, 1, 1, 0] = -0.5
    out = ops.deform_roi_pool(x, rois, offset, 2, 1.0, 1, 0.1)
    torch.testing.assert_close(out[0, 0], torch.tensor([[2.6, 4.6], [2.6, 4.6]]))
    torch.testing.assert_close(out[0, 1], torch.tensor([[25.0, 25.0], [43.0, 45.0]]))


def test_sample_outside_the_map_counts_zero(backend):
    x = torch.ones(1, 1, 4, 4)
    rois = torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]])  # one bin, one sample at (1, 1)
    offset = torch.tensor([[[[3.0]], [[0.0]]]])  # moves x by 0.1 * 2 * 3 = 0.6 -> (1, 1.6): inside
    assert ops.deform_roi_pool(x, rois, offset, 1, 1.0, 1).item() == pytest.approx(1.0)
    far = torch.tensor([[[[50.0]], [[0.0]]]])  # x = 1 + 10 > W: outside
    assert ops.deform_roi_pool(x, rois, far, 1, 1.0, 1).item() == 0.0


def test_modulated_multiplies_each_bin_by_its_mask(backend):
    x = _ramp()
    rois = torch.tensor([[0, 2.0, 2.0, 6.0, 6.0]])
    offset = torch.zeros(1, 2, 2, 2)
    mask = torch.tensor([[[[0.5, 1.0], [0.0, 2.0]]]])
    out = ops.modulated_deform_roi_pool(x, rois, offset, mask, 2, 1.0, 1)
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.25, 4.5], [0.0, 9.0]]))


def test_gradcheck_deform_roi_pool(backend):
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.7, 1.1, 5.3, 6.2], [1, 2.2, -1.4, 9.1, 4.3]], dtype=torch.float64)
    off = (torch.randn(2, 2, 2, 3, dtype=torch.float64) * 0.7).requires_grad_()
    mask = torch.rand(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda a, o: ops.deform_roi_pool(a, rois, o, (2, 3), 0.9, 2, 0.3), (x, off))
    assert gradcheck(lambda a, o: ops.deform_roi_pool(a, rois, o, (2, 3), 0.9, 0, 0.3), (x, off))
    assert gradcheck(lambda a: ops.deform_roi_pool(a, rois, None, (2, 3), 0.9, 0), (x,))
    assert gradcheck(
        lambda a, o, m: ops.modulated_deform_roi_pool(a, rois, o, m, (2, 3), 0.9, 1, 0.3), (x, off, mask)
    )


def _random_case(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 13, 17, generator=gen, dtype=dtype)
    xy = torch.rand(12, 2, generator=gen, dtype=dtype) * 60 - 6
    wh = torch.rand(12, 2, generator=gen, dtype=dtype) * 40
    wh[::5] = 0.3  # tiny rois
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=gen).to(dtype), xy, xy + wh], dim=1)
    offset = torch.randn(12, 2, 3, 3, generator=gen, dtype=dtype)
    return x, rois, offset


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sr", [0, 2])
def test_native_matches_reference(force, dtype, sr):
    x, rois, offset = _random_case(dtype, seed=sr)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    res = {}
    for name in ("native", "reference"):
        force(name)
        xi, oi = x.clone().requires_grad_(), offset.clone().requires_grad_()
        out = ops.deform_roi_pool(xi, rois, oi, 3, 0.25, sr, 0.1)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (out * g).sum().backward()
        res[name] = (out.detach(), xi.grad, oi.grad)
    for a, b in zip(res["native"], res["reference"]):
        torch.testing.assert_close(a, b, **tol)


@needs_native
def test_native_matches_reference_nan_offset(force):
    x, rois, offset = _random_case(torch.float64)
    offset[3, 0, 1, 1] = float("nan")
    outs = []
    for name in ("native", "reference"):
        force(name)
        outs.append(ops.deform_roi_pool(x, rois, offset, 3, 0.25, 2))
    torch.testing.assert_close(outs[0], outs[1])
    assert torch.all(outs[0][3, :, 1, 1] == 0)  # a NaN bin samples nothing


def test_pack_modules_layout_and_initial_output(backend):
    torch.manual_seed(0)
    pack = ops.DeformRoIPoolPack(2, 3, deform_fc_channels=8, spatial_scale=0.5)
    mpack = ops.ModulatedDeformRoIPoolPack(2, 3, deform_fc_channels=8, spatial_scale=0.5)
    assert [(k, tuple(v.shape)) for k, v in pack.state_dict().items()] == [
        ("offset_fc.0.weight", (8, 12)),
        ("offset_fc.0.bias", (8,)),
        ("offset_fc.2.weight", (8, 8)),
        ("offset_fc.2.bias", (8,)),
        ("offset_fc.4.weight", (8, 8)),
        ("offset_fc.4.bias", (8,)),
    ]
    keys = [(k, tuple(v.shape)) for k, v in mpack.state_dict().items()]
    assert keys[6:] == [
        ("mask_fc.0.weight", (8, 12)),
        ("mask_fc.0.bias", (8,)),
        ("mask_fc.2.weight", (4, 8)),
        ("mask_fc.2.bias", (4,)),
    ]
    x = torch.randn(1, 3, 12, 12)
    rois = torch.tensor([[0, 1.0, 2.0, 17.0, 20.0], [0, 4.0, 4.0, 9.0, 22.0]])
    plain = ops.roi_align(x, rois, 2, 0.5, 0, True)
    # zero-initialised last layers: no offsets, and a sigmoid(0) = 0.5 mask
    torch.testing.assert_close(pack(x, rois), plain)
    torch.testing.assert_close(mpack(x, rois), 0.5 * plain)
    # with a non-zero last layer the offsets reach the output and the fc layers get gradients
    torch.nn.init.normal_(pack.offset_fc[4].weight, std=0.5)
    out = pack(x, rois)
    assert not torch.allclose(out, plain)
    out.sum().backward()
    assert pack.offset_fc[0].weight.grad.abs().sum() > 0


def test_errors(backend):
    x = torch.randn(1, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match="'offset' must have shape"):
        ops.deform_roi_pool(x, rois, torch.zeros(1, 2, 3, 3), 2)
    with pytest.raises(ValueError, match="'mask' must have shape"):
        ops.modulated_deform_roi_pool(x, rois, torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), 2)
    with pytest.raises(TypeError, match="'offset' has dtype"):
        ops.deform_roi_pool(x, rois, torch.zeros(1, 2, 2, 2, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="output_channels=4"):
        ops.DeformRoIPoolPack(2, 4, deform_fc_channels=4)(x, rois)
    with pytest.raises(ValueError, match="rois"):
        ops.deform_roi_pool(x, rois[:, :4], None, 2)


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
    x, rois, offset = _random_case(dtype, seed=3)
    res = {}
    for dev in ("cpu", "cuda"):
        xi, oi = x.to(dev).requires_grad_(), offset.to(dev).requires_grad_()
        mask = torch.rand(12, 1, 3, 3, generator=torch.Generator().manual_seed(2), dtype=dtype).to(dev)
        out = ops.modulated_deform_roi_pool(xi, rois.to(dev), oi, mask, 3, 0.25, 0, 0.1)
        (out * out.detach()).sum().backward()
        res[dev] = [t.cpu() for t in (out.detach(), xi.grad, oi.grad)]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    for a, b in zip(res["cpu"], res["cuda"]):
        torch.testing.assert_close(a, b, **tol)


@needs_native
def test_opcheck_schema_fake_and_autograd_registration():
    """torch.library.opcheck: schema, fake kernel (torch.compile / export), autograd registration."""
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0], [1, 0.0, 2.0, 9.0, 5.0]], dtype=torch.float64)
    off = torch.randn(2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    for offset, sr in ((off, 0), (None, 2)):
        result = torch.library.opcheck(
            torch.ops.detcore.deform_roi_pool.default, (x, rois, offset, 0.5, 2, 2, sr, 0.1)
        )
        assert set(result.values()) == {"SUCCESS"}, result
