"""The native ops are torch custom ops: models using them work under torch.compile and torch.export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detcore import ops

pytestmark = pytest.mark.skipif(
    not ops.native_available(),
    reason="detcore_native is not installed (pip install --no-build-isolation ./native)",
)


class TinyHead(nn.Module):
    """RoIAlign -> a conv -> per-roi score -> NMS over the roi boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, feats: torch.Tensor, rois: torch.Tensor):
        pooled = ops.roi_align(feats, rois, (2, 2), 0.5, 2, True)
        scores = self.conv(pooled).mean(dim=(1, 2, 3)).sigmoid()
        keep = ops.nms(rois[:, 1:], scores, 0.5)
        return pooled, keep


def _inputs():
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 16, 16)
    rois = torch.tensor([[0, 1, 1, 10, 10], [0, 2, 2, 11, 11], [1, 20, 4, 30, 12], [1, 0, 0, 31, 31.0]])
    return feats, rois


def test_torch_compile_fullgraph(monkeypatch):
    monkeypatch.setenv("DETCORE_OPS", "native")
    torch._dynamo.reset()
    model = TinyHead()
    feats, rois = _inputs()
    want = model(feats, rois)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    feats_c = feats.clone().requires_grad_()
    got = compiled(feats_c, rois)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])
    got[0].sum().backward()  # the registered autograd formula runs through aot_autograd
    feats_e = feats.clone().requires_grad_()
    model(feats_e, rois)[0].sum().backward()
    torch.testing.assert_close(feats_c.grad, feats_e.grad)


def test_torch_export(monkeypatch):
    monkeypatch.setenv("DETCORE_OPS", "native")
    model = TinyHead().eval()
    feats, rois = _inputs()
    ep = torch.export.export(model, (feats, rois))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "detcore.roi_align.default" in targets and "detcore.nms.default" in targets
    got = ep.module()(feats, rois)
    want = model(feats, rois)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_compile_deform_conv_and_focal_loss(monkeypatch):
    monkeypatch.setenv("DETCORE_OPS", "native")
    torch._dynamo.reset()
    layer = ops.ModulatedDeformConv2dPack(2, 3, 3, padding=1)

    def step(x, targets):
        out = layer(x)
        logits = out.mean(dim=(2, 3))
        return ops.sigmoid_focal_loss(logits, targets, reduction="sum")

    x = torch.randn(2, 2, 6, 6)
    targets = torch.tensor([1, 3])
    want = step(x, targets)
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(x, targets)
    torch.testing.assert_close(got, want)
