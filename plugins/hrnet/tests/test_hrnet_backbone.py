"""HRNet and HRModule: branch shapes and strides, the multi-resolution fusion on hand-set weights,
norm_eval / frozen_stages / zero_init_residual, activation checkpointing and bad ``extra`` tables."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from det_plugin_hrnet import HRModule, HRNet
from det_plugin_resnet.blocks import BasicBlock
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import detcore

pytestmark = pytest.mark.usefixtures("one_thread")

W32 = {
    "stage1": {"num_modules": 1, "num_branches": 1, "block": "BOTTLENECK", "num_blocks": [4],
               "num_channels": [64]},
    "stage2": {"num_modules": 1, "num_branches": 2, "block": "BASIC", "num_blocks": [4, 4],
               "num_channels": [32, 64]},
    "stage3": {"num_modules": 4, "num_branches": 3, "block": "BASIC", "num_blocks": [4, 4, 4],
               "num_channels": [32, 64, 128]},
    "stage4": {"num_modules": 3, "num_branches": 4, "block": "BASIC", "num_blocks": [4, 4, 4, 4],
               "num_channels": [32, 64, 128, 256]},
}  # fmt: skip


def tiny_extra(widths=(4, 8, 12, 16)) -> dict:
    """One module of one block per branch, branches of ``widths`` channels."""
    extra = {"stage1": {"num_modules": 1, "num_branches": 1, "block": "BOTTLENECK", "num_blocks": [1],
                        "num_channels": [4]}}  # fmt: skip
    for k in (2, 3, 4):
        extra[f"stage{k}"] = {"num_modules": 1, "num_branches": k, "block": "BASIC", "num_blocks": [1] * k,
                              "num_channels": list(widths[:k])}  # fmt: skip
    return extra


def test_w32_outputs_the_reference_documented_shapes():
    """The reference's documented example: HRNetV2-W32 with one input channel on a 32x32 image gives
    (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2), (1, 256, 1, 1)."""
    torch.manual_seed(0)
    model = detcore.build("backbone", {"type": "HRNet", "extra": W32, "in_channels": 1}).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 1, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2), (1, 256, 1, 1)]
    assert model.out_channels == (32, 64, 128, 256)
    # stage 3 has 4 modules, stage 4 has 3; stage 1 has 4 Bottlenecks
    assert len(model.stage3) == 4 and len(model.stage4) == 3 and len(model.layer1) == 4


@pytest.mark.parametrize(("size", "expected"), [((64, 96), [(16, 24), (8, 12), (4, 6), (2, 3)]),
                                                ((50, 70), [(13, 18), (7, 9), (4, 5), (2, 3)])])  # fmt: skip
def test_branch_strides_4_to_32_rounding_up(size, expected):
    model = HRNet(tiny_extra(), stem_channels=8).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [4, 8, 12, 16] == list(model.out_channels)


def test_single_scale_output_keeps_branch_0_only():
    model = HRNet(tiny_extra(), stem_channels=8, multiscale_output=False).eval()
    outs = model(torch.rand(1, 3, 64, 64))
    assert len(outs) == 1 and tuple(outs[0].shape) == (1, 4, 16, 16)
    assert model.out_channels == (4,)
    # the last module fuses into branch 0 only: one row of fuse layers
    assert len(model.stage4[-1].fuse_layers) == 1 and len(model.stage3[-1].fuse_layers) == 3


def _set_identity_blocks(module: HRModule) -> None:
    """Zero the last norm of every block: a BasicBlock then returns relu(x) (x for x >= 0)."""
    for m in module.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.norm2.weight)
            nn.init.zeros_(m.norm2.bias)


def _center_tap(conv: nn.Conv2d, matrix: torch.Tensor) -> None:
    """A 3x3 conv whose only non-zero tap is the centre: out[:, o] = sum_i matrix[o, i] x[:, i]
    sampled at the stride."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = matrix


def _bn_scale(module: HRModule) -> float:
    return 1 / (1 + module.fuse_layers[0][1][1].eps) ** 0.5


def test_fusion_sums_the_upsampled_and_downsampled_branches():
    """Two branches of 2 and 3 channels with identity blocks, hand-set fuse convs and eval-mode norms
    (mean 0, variance 1, scale 1): out0 = relu(x0 + nearest_up2(A @ x1)),
    out1 = relu(x1 + B @ x0[::2, ::2])."""
    torch.manual_seed(0)
    module = HRModule(2, BasicBlock, [1, 1], [2, 3], [2, 3]).eval()
    _set_identity_blocks(module)
    a = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])  # 3 -> 2 channels (1x1)
    b = torch.tensor([[2.0, 0.0], [-1.0, 1.0], [0.5, 0.5]])  # 2 -> 3 channels (3x3, stride 2)
    with torch.no_grad():
        module.fuse_layers[0][1][0].weight.copy_(a[:, :, None, None])
    _center_tap(module.fuse_layers[1][0][0][0], b)
    assert module.fuse_layers[0][0] is None and module.fuse_layers[1][1] is None
    x0, x1 = torch.rand(1, 2, 8, 8), torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        out0, out1 = module([x0, x1])
    s = _bn_scale(module)
    up = torch.einsum("oi,bihw->bohw", a, x1).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    down = torch.einsum("oi,bihw->bohw", b, x0[:, :, ::2, ::2])
    torch.testing.assert_close(out0, torch.relu(x0 + s * up))
    torch.testing.assert_close(out1, torch.relu(x1 + s * down))


def test_two_step_downsampling_has_a_relu_between_the_steps():
    """Branch 0 -> branch 2: conv-norm-ReLU (stride 2, 1 -> 1 channel), then conv-norm (stride 2, 1 -> 1);
    with a negative first weight the ReLU zeroes the path for positive inputs."""
    module = HRModule(3, BasicBlock, [1, 1, 1], [1, 1, 1], [1, 1, 1]).eval()
    _set_identity_blocks(module)
    for row in module.fuse_layers:
        for path in row:
            if path is not None:
                for m in path.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.zeros_(m.weight)
    path = module.fuse_layers[2][0]
    assert len(path) == 2 and isinstance(path[0][2], nn.ReLU) and len(path[1]) == 2
    x = [torch.rand(1, 1, 8, 8), torch.rand(1, 1, 4, 4), torch.rand(1, 1, 2, 2)]
    s = _bn_scale(module)
    for w1, expected in ((2.0, 2.0 * 3.0 * s * s * x[0][:, :, ::4, ::4]), (-2.0, torch.zeros(1, 1, 2, 2))):
        _center_tap(path[0][0], torch.tensor([[w1]]))
        _center_tap(path[1][0], torch.tensor([[3.0]]))
        with torch.no_grad():
            out = module(x)
        torch.testing.assert_close(out[2], torch.relu(x[2] + expected))


def test_single_branch_module_has_no_fusion():
    module = HRModule(1, BasicBlock, [2], [4], [4])
    assert module.fuse_layers is None
    x = torch.rand(1, 4, 8, 8)
    assert module([x])[0].shape == x.shape


def test_norm_eval_keeps_batch_norms_in_eval_mode():
    model = HRNet(tiny_extra(), stem_channels=8, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.rand(2, 3, 32, 32) * 5)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    model = HRNet(tiny_extra(), stem_channels=8, norm_eval=False).train()
    assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_frozen_stages_freeze_the_stem_and_the_first_stages():
    model = HRNet(tiny_extra(), stem_channels=8, frozen_stages=2, norm_eval=False).train()
    frozen = ["conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2"]
    trained = ["transition2", "stage3", "transition3", "stage4"]
    for name in frozen:
        module = getattr(model, name)
        assert not any(p.requires_grad for p in module.parameters()), name
        assert not any(m.training for m in module.modules()), name
    for name in trained:
        module = getattr(model, name)
        assert all(p.requires_grad for p in module.parameters()), name
        assert all(m.training for m in module.modules()), name
    model(torch.rand(1, 3, 64, 64))[0].sum().backward()
    assert model.conv1.weight.grad is None and model.stage3[0].branches[0][0].conv1.weight.grad is not None


def test_zero_init_residual_zeroes_the_last_norm_of_every_block():
    model = HRNet(tiny_extra(), stem_channels=8, zero_init_residual=True)
    model.init_weights()
    blocks = [m for m in model.modules() if hasattr(m, "last_norm")]
    assert len(blocks) == 1 + 2 + 3 + 4
    assert all(torch.count_nonzero(b.last_norm.weight) == 0 for b in blocks)
    plain = HRNet(tiny_extra(), stem_channels=8)
    plain.init_weights()
    assert all(torch.all(m.last_norm.weight == 1) for m in plain.modules() if hasattr(m, "last_norm"))


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = HRNet(tiny_extra(), stem_channels=8, norm_eval=False)
    checkpointed = HRNet(tiny_extra(), stem_channels=8, norm_eval=False, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        out = model(x)
        sum(o.square().sum() for o in out).backward()
        grads.append((out, model.stage3[0].branches[1][0].conv1.weight.grad))
    for a, b in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_group_norm_and_the_norm_names():
    model = HRNet(tiny_extra(), stem_channels=8, norm_cfg={"type": "GN", "num_groups": 2})
    assert isinstance(model.gn1, nn.GroupNorm)
    assert isinstance(model.stage2[0].branches[0][0].gn1, nn.GroupNorm)
    assert model(torch.rand(1, 3, 32, 32))[3].shape == (1, 16, 1, 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda e: e["stage3"].update(num_blocks=[1, 1]), "stage3.num_blocks needs one entry per branch"),
     (lambda e: e.pop("stage4"), "extra.stage4 is missing"),
     (lambda e: e["stage2"].update(block="BASICC"), "stage2.block must be one of"),
     (lambda e: e["stage1"].update(num_branches=2, num_blocks=[1, 1], num_channels=[4, 4]),
      "stage1.num_branches must be 1"),
     (lambda e: e["stage2"].pop("num_modules"), "missing keys ['num_modules']")],
)  # fmt: skip
def test_bad_extra_tables_are_named(edit, message):
    extra = copy.deepcopy(tiny_extra())
    edit(extra)
    with pytest.raises(ValueError, match=re.escape(message)):
        HRNet(extra)


def test_forward_refuses_a_non_image_tensor():
    with pytest.raises(ValueError, match=r"HRNet: expected a \(B, C, H, W\) tensor"):
        HRNet(tiny_extra())(torch.rand(3, 32, 32))


def test_upsampling_matches_nearest_interpolation():
    """The fuse path's upsampling is nearest-neighbour by 2**(j - i) (here 4, branch 2 -> 0)."""
    module = HRModule(3, BasicBlock, [1, 1, 1], [1, 1, 1], [1, 1, 1]).eval()
    up = module.fuse_layers[0][2][2]
    x = torch.rand(1, 1, 3, 5)
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=4, mode="nearest"))
