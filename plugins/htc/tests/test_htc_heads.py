"""HTC's building blocks on hand-made inputs: HTCMaskHead against a functional re-computation from its
weights (the residual input through conv_res, the features handed on), FusedSemanticHead (fusion of
the levels at the fusion level's size against a functional re-computation, the loss with label 255
ignored against a hand computation), and SegRescale's nearest sampling of a hand-made map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detcore.data.transforms import SegRescale
from detcore.models.roi_heads.semantic_heads import FusedSemanticHead

pytest.importorskip("det_plugin_htc", reason="det-plugin-htc is not installed")
from det_plugin_htc import HTCMaskHead  # noqa: E402


def _conv(module, x: torch.Tensor, padding: int = 0, relu: bool = True) -> torch.Tensor:
    """A ConvModule (conv + ReLU, no norm) recomputed from its weights."""
    y = F.conv2d(x, module.conv.weight, module.conv.bias, padding=padding)
    return y.clamp(min=0) if relu else y


def _head(num_classes: int = 3, with_conv_res: bool = True) -> HTCMaskHead:
    torch.manual_seed(0)
    head = HTCMaskHead(with_conv_res=with_conv_res, num_convs=2, in_channels=4, conv_out_channels=4,
                       num_classes=num_classes, roi_feat_size=6)  # fmt: skip
    head.init_weights()
    for p in head.parameters():  # non-zero biases too
        p.data.add_(0.05 * torch.randn_like(p))
    return head


def _reference_head(head: HTCMaskHead, x: torch.Tensor, res: torch.Tensor | None):
    if res is not None:
        x = x + _conv(head.conv_res, res)
    for conv in head.convs:
        x = _conv(conv, x, padding=1)
    up = F.conv_transpose2d(x, head.upsample.weight, head.upsample.bias, stride=2).clamp(min=0)
    return F.conv2d(up, head.conv_logits.weight, head.conv_logits.bias), x


def test_htc_mask_head_adds_the_previous_features_and_hands_its_own_on():
    head = _head()
    x, res = torch.randn(5, 4, 6, 6), torch.randn(5, 4, 6, 6)
    for given in (None, res):
        logits, feat = head(x, given)
        ref_logits, ref_feat = _reference_head(head, x, given)
        assert logits.shape == (5, 3, 12, 12) and feat.shape == (5, 4, 6, 6)
        torch.testing.assert_close(logits, ref_logits)
        torch.testing.assert_close(feat, ref_feat)
        torch.testing.assert_close(head(x, given, return_feat=False), ref_logits)
        torch.testing.assert_close(head(x, given, return_logits=False), ref_feat)
    assert not torch.allclose(head(x, res)[0], head(x)[0])


def test_htc_mask_head_keys_and_errors():
    head = _head()
    keys = list(head.state_dict())
    assert keys[-4:] == [
        "conv_logits.weight",
        "conv_logits.bias",
        "conv_res.conv.weight",
        "conv_res.conv.bias",
    ]
    first = _head(with_conv_res=False)
    assert not any(k.startswith("conv_res") for k in first.state_dict())
    x = torch.randn(2, 4, 6, 6)
    with pytest.raises(ValueError, match="no conv_res"):
        first(x, x)
    with pytest.raises(ValueError, match="nothing to return"):
        head(x, return_logits=False, return_feat=False)
    with pytest.raises(ValueError, match=r"\(N, 4, S, S\)"):
        head(torch.randn(2, 3, 6, 6))


def _semantic_head(**kw) -> FusedSemanticHead:
    torch.manual_seed(1)
    head = FusedSemanticHead(num_ins=3, fusion_level=1, num_convs=2, in_channels=4, conv_out_channels=5,
                             num_classes=6, **kw)  # fmt: skip
    head.init_weights()
    for p in head.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return head


def test_fused_semantic_head_fuses_every_level_at_the_fusion_level():
    head = _semantic_head()
    feats = [torch.randn(2, 4, 16, 12), torch.randn(2, 4, 8, 6), torch.randn(2, 4, 4, 3)]
    logits, feat = head(feats)
    assert logits.shape == (2, 6, 8, 6) and feat.shape == (2, 5, 8, 6)
    # independent recomputation: laterals (no ReLU inplace issue), bilinear align_corners resize
    x = _conv(head.lateral_convs[1], feats[1])
    for i in (0, 2):
        resized = F.interpolate(feats[i], size=(8, 6), mode="bilinear", align_corners=True)
        x = x + _conv(head.lateral_convs[i], resized)
    for conv in head.convs:
        x = _conv(conv, x, padding=1)
    torch.testing.assert_close(logits, F.conv2d(x, head.conv_logits.weight, head.conv_logits.bias))
    torch.testing.assert_close(feat, _conv(head.conv_embedding, x))
    names = [k for k in head.state_dict()]
    assert names[0] == "lateral_convs.0.conv.weight" and names[-2:] == [
        "conv_logits.weight",
        "conv_logits.bias",
    ]
    with pytest.raises(ValueError, match="expected 3 feature levels"):
        head(feats[:2])


def test_semantic_loss_ignores_255_and_averages_over_all_pixels():
    head = _semantic_head()
    assert head.ignore_label == 255
    # logits: class c scores c at every pixel of a 1 x 2 x 2 map; labels 0, 5, 255, 2
    logits = torch.arange(6.0).view(1, 6, 1, 1).expand(1, 6, 2, 2).contiguous()
    labels = torch.tensor([[[[0, 5], [255, 2]]]])
    lse = math.log(sum(math.exp(c) for c in range(6)))
    expected = 0.2 * ((lse - 0) + (lse - 5) + 0 + (lse - 2)) / 4  # the ignored pixel counts as 0
    assert float(head.loss(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(head.loss(logits, labels[:, 0])) == pytest.approx(expected, rel=1e-6)
    # ignore_label / loss_weight override the loss table
    other = _semantic_head(ignore_label=5, loss_weight=1.0)
    expected_other = ((lse - 0) + (lse - 2) + 0 * 0) / 4 + 0  # 255 is now a class index out of range
    with pytest.raises((IndexError, RuntimeError)):
        other.loss(logits, labels)
    ok = torch.tensor([[[[0, 5], [5, 2]]]])
    assert float(other.loss(logits, ok)) == pytest.approx(expected_other, rel=1e-6)
    with pytest.raises(ValueError, match="does not match the semantic logits"):
        head.loss(logits, torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_seg_rescale_samples_the_nearest_pixel():
    # a 16 x 8 map whose value encodes its row and column: 1/4 keeps rows 0, 4, 8, 12 and columns 0, 4
    seg = (np.arange(16)[:, None] * 8 + np.arange(8)[None, :]).astype(np.uint8)
    seg[15, 7] = 255
    out = SegRescale(scale_factor=0.25)({"gt_semantic_seg": seg.copy(), "seg_fields": ["gt_semantic_seg"]})
    got = out["gt_semantic_seg"]
    assert got.shape == (4, 2) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[0, 4], [32, 36], [64, 68], [96, 100]])
    # 1/8 of a 32 x 24 map of 8 x 8 blocks: one value per block, labels never blended
    blocks = np.kron(
        np.array([[1, 2, 255], [3, 0, 4], [5, 6, 7], [8, 9, 10]], np.uint8), np.ones((8, 8), np.uint8)
    )
    out = SegRescale(scale_factor=0.125)({"gt_semantic_seg": blocks, "seg_fields": ["gt_semantic_seg"]})
    np.testing.assert_array_equal(out["gt_semantic_seg"], [[1, 2, 255], [3, 0, 4], [5, 6, 7], [8, 9, 10]])
