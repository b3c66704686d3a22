"""The backbone plugin blocks: GCNet's context block and the generalized attention block, against
hand-computed values and a per-position loop written from the paper's energy formula; their names and
construction through ``build_plugin_layer``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detcore.models.layers import ContextBlock, GeneralizedAttention, NonLocal2d, build_plugin_layer

pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_map() -> torch.Tensor:
    """(1, 2, 1, 3): channel 0 = [0, ln 2, ln 3] (softmax weights 1/6, 2/6, 3/6), channel 1 = [6, 0, -6]."""
    return torch.tensor([[[[0.0, math.log(2), math.log(3)]], [[6.0, 0.0, -6.0]]]])


def _set_conv(conv: nn.Conv2d, weight: list, bias: list | None = None) -> None:
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight, dtype=torch.float32).view_as(conv.weight))
        if conv.bias is not None:
            conv.bias.copy_(torch.tensor(bias if bias is not None else [0.0] * conv.out_channels))


# -- context block ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling_type", ["att", "avg"])
def test_context_block_is_the_identity_at_init(pooling_type):
    torch.manual_seed(0)
    block = ContextBlock(32, ratio=1 / 16, pooling_type=pooling_type)
    x = torch.randn(2, 32, 5, 7)
    assert torch.equal(block(x), x)
    assert [k for k in block.state_dict()][:2] == (
        ["conv_mask.weight", "conv_mask.bias"] if pooling_type == "att" else ["channel_add_conv.0.weight",
                                                                              "channel_add_conv.0.bias"]
    )  # fmt: skip


def test_context_block_channel_mul_starts_at_half_the_input():
    """The last conv is zero in both transforms: sigmoid(0) = 1/2 (the reference's initialisation)."""
    block = ContextBlock(16, ratio=0.25, fusion_types=("channel_mul",))
    x = torch.randn(1, 16, 3, 4)
    assert torch.allclose(block(x), x / 2)
    assert block.channel_add_conv is None and tuple(block.channel_mul_conv[1].normalized_shape) == (4, 1, 1)


def test_context_block_attention_pooling_is_the_softmax_weighted_sum():
    block = ContextBlock(2, ratio=1.0)
    _set_conv(block.conv_mask, [1.0, 0.0], [0.5])  # logits = channel 0 (+ a constant, which cancels)
    x = _hand_map()
    context = block.spatial_pool(x).flatten()
    expected = torch.tensor([(2 * math.log(2) + 3 * math.log(3)) / 6, (6 * 1 + 0 * 2 - 6 * 3) / 6])
    assert torch.allclose(context, expected, atol=1e-6)
    avg = ContextBlock(2, ratio=1.0, pooling_type="avg").spatial_pool(x).flatten()
    assert torch.allclose(avg, torch.tensor([(math.log(2) + math.log(3)) / 3, 0.0]), atol=1e-6)


def test_context_block_adds_the_transformed_context_to_every_position():
    """Transform by hand: identity 1x1 conv, LayerNorm over the 2 channels, ReLU, identity conv + bias."""
    block = ContextBlock(2, ratio=1.0)
    _set_conv(block.conv_mask, [1.0, 0.0])
    _set_conv(block.channel_add_conv[0], [[1.0, 0.0], [0.0, 1.0]])
    _set_conv(block.channel_add_conv[3], [[1.0, 0.0], [0.0, 1.0]], [0.25, -0.5])
    x = _hand_map()
    c0, c1 = (2 * math.log(2) + 3 * math.log(3)) / 6, -2.0
    d = (c0 - c1) / 2  # LayerNorm of (c0, c1): (+d, -d) / sqrt(d^2 + eps)
    normed = [d / math.sqrt(d * d + 1e-5), -d / math.sqrt(d * d + 1e-5)]
    added = torch.tensor([max(normed[0], 0) + 0.25, max(normed[1], 0) - 0.5]).view(1, 2, 1, 1)
    assert torch.allclose(block(x), x + added, atol=1e-6)


def test_context_block_refuses_bad_arguments():
    with pytest.raises(ValueError, match="pooling_type"):
        ContextBlock(16, 0.25, pooling_type="max")
    with pytest.raises(ValueError, match="fusion_types"):
        ContextBlock(16, 0.25, fusion_types=("channel_sub",))
    with pytest.raises(TypeError, match="fusion_types"):
        ContextBlock(16, 0.25, fusion_types="channel_add")
    with pytest.raises(ValueError, match="ratio"):
        ContextBlock(8, 1 / 16)
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\)"):
        ContextBlock(16, 0.25)(torch.randn(1, 8, 3, 3))


# -- generalized attention -------------------------------------------------------------------------


def _embedding(offset: float, dim: int) -> torch.Tensor:
    """The paper's sinusoidal embedding of one offset: sin / cos of offset / 1000^(4k / dim), k < dim / 4."""
    waves = [1000.0 ** (4.0 * k / dim) for k in range(dim // 4)]
    return torch.tensor([math.sin(offset / w) for w in waves] + [math.cos(offset / w) for w in waves])


def _in_window(q: int, kv: int, r: int, s: int) -> bool:
    """The reference's window along one axis: key index in [max((q - r) // s, 0), (q + r + 1) // s + 1)."""
    return max((q - r) // s, 0) <= kv < (q + r + 1) // s + 1


def _naive_attention(block: GeneralizedAttention, x: torch.Tensor) -> torch.Tensor:
    """Per query / key position and head, the paper's energy E = [1] q.k + [2] q.R + [3] u.k + [4] v.R."""
    t, m, d, s = block.attention_type, block.num_heads, block.qk_embed_dim, block.kv_stride
    n, c, h, w = x.shape
    q = block.query_conv(x) if hasattr(block, "query_conv") else None
    kv_rows, kv_cols = list(range(0, h, s)), list(range(0, w, s))
    x_kv = x[:, :, ::s, ::s]
    k = block.key_conv(x_kv) if hasattr(block, "key_conv") else None
    v = block.value_conv(x_kv)
    dim = block.position_embedding_dim
    out = torch.zeros(n, m * block.v_dim, h, w)
    for b in range(n):
        for i in range(h):
            for j in range(w):
                for head in range(m):
                    hs = slice(head * d, (head + 1) * d)
                    logits, values = [], []
                    for a, kr in enumerate(kv_rows):
                        for e, kc in enumerate(kv_cols):
                            energy = torch.tensor(0.0)
                            if block.spatial_range >= 0:
                                r = block.spatial_range
                                if not (_in_window(i, a, r, s) and _in_window(j, e, r, s)):
                                    logits.append(torch.tensor(-math.inf))
                                    values.append(v[b, head * block.v_dim:(head + 1) * block.v_dim, a, e])
                                    continue
                            if t[0]:
                                energy = energy + q[b, hs, i, j] @ k[b, hs, a, e]
                            if t[2]:
                                energy = energy + block.appr_bias[hs] @ k[b, hs, a, e]
                            if t[1] or t[3]:
                                rel = (block.appr_geom_fc_x(_embedding(j - kc, dim))[hs]
                                       + block.appr_geom_fc_y(_embedding(i - kr, dim))[hs]) / math.sqrt(2)
                                if t[1]:
                                    energy = energy + q[b, hs, i, j] @ rel
                                if t[3]:
                                    energy = energy + block.geom_bias[hs] @ rel
                            logits.append(energy)
                            values.append(v[b, head * block.v_dim:(head + 1) * block.v_dim, a, e])
                    weights = torch.stack(logits).softmax(0)
                    out[b, head * block.v_dim:(head + 1) * block.v_dim, i, j] = weights @ torch.stack(values)
    return x + block.gamma * block.proj_conv(out)  # fmt: skip


def test_generalized_attention_is_the_identity_at_init():
    torch.manual_seed(0)
    block = GeneralizedAttention(16, num_heads=4, attention_type="1111")
    x = torch.randn(2, 16, 6, 5)
    assert block.gamma.item() == 0 and torch.equal(block(x), x)


@pytest.mark.parametrize(
    ("attention_type", "spatial_range"), [("1111", -1), ("1000", -1), ("0100", -1), ("0001", -1), ("1010", 1)]
)
def test_generalized_attention_matches_the_energy_formula_position_by_position(attention_type, spatial_range):
    torch.manual_seed(0)
    block = GeneralizedAttention(8, num_heads=2, attention_type=attention_type, kv_stride=2,
                                 spatial_range=spatial_range, position_embedding_dim=8)  # fmt: skip
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(1, 8, 3, 5)
    with torch.no_grad():
        assert torch.allclose(block(x), _naive_attention(block, x), atol=1e-5)


def test_generalized_attention_0010_weights_every_position_by_key_saliency():
    """'0010' by hand: one head, identity key / value / projection convs, u = (1, 0): every output
    position gets the softmax(channel 0)-weighted sum of the input, here [1, 2, 3] / 6."""
    block = GeneralizedAttention(2, num_heads=1, attention_type="0010", kv_stride=1)
    assert not hasattr(block, "query_conv") and not hasattr(block, "appr_geom_fc_x")
    eye = [[1.0, 0.0], [0.0, 1.0]]
    for conv in (block.key_conv, block.value_conv, block.proj_conv):
        _set_conv(conv, eye)
    with torch.no_grad():
        block.appr_bias.copy_(torch.tensor([1.0, 0.0]))
        block.gamma.fill_(1.0)
    x = _hand_map()
    pooled = torch.tensor([(2 * math.log(2) + 3 * math.log(3)) / 6, -2.0]).view(1, 2, 1, 1)
    with torch.no_grad():
        assert torch.allclose(block(x), x + pooled, atol=1e-6)


@pytest.mark.parametrize(("q_stride", "kv_stride"), [(1, 1), (1, 2), (2, 2), (2, 1)])
def test_generalized_attention_keeps_the_input_shape(q_stride, kv_stride):
    block = GeneralizedAttention(16, num_heads=8, q_stride=q_stride, kv_stride=kv_stride)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    x = torch.randn(2, 16, 7, 9)
    y = block(x)
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_generalized_attention_layout_and_bad_arguments():
    block = GeneralizedAttention(256, num_heads=8, attention_type="1111", kv_stride=2)
    assert [(k, tuple(v.shape)) for k, v in block.state_dict().items()] == [
        ("appr_bias", (256,)), ("geom_bias", (256,)), ("gamma", (1,)),
        ("query_conv.weight", (256, 256, 1, 1)), ("key_conv.weight", (256, 256, 1, 1)),
        ("value_conv.weight", (256, 256, 1, 1)), ("appr_geom_fc_x.weight", (256, 128)),
        ("appr_geom_fc_y.weight", (256, 128)), ("proj_conv.weight", (256, 256, 1, 1)),
        ("proj_conv.bias", (256,)),
    ]  # fmt: skip
    state = dict(block.state_dict(), local_constraint_map=torch.zeros(2, 2, 1, 1, dtype=torch.uint8))
    block.load_state_dict(state)  # the reference's window key is dropped
    with pytest.raises(ValueError, match="attention_type"):
        GeneralizedAttention(16, attention_type="11")
    with pytest.raises(ValueError, match="0000"):
        GeneralizedAttention(16, attention_type="0000")
    with pytest.raises(ValueError, match="multiple of 4"):
        GeneralizedAttention(16, position_embedding_dim=6)


# -- building by name ------------------------------------------------------------------------------


def test_build_plugin_layer_names_blocks_as_the_reference():
    name, block = build_plugin_layer({"type": "ContextBlock", "ratio": 1 / 16}, in_channels=512)
    assert name == "context_block" and isinstance(block, ContextBlock) and block.planes == 32
    name, block = build_plugin_layer({"type": "GeneralizedAttention", "num_heads": 8}, in_channels=64)
    assert name == "gen_attention_block" and isinstance(block, GeneralizedAttention)
    name, block = build_plugin_layer({"type": "NonLocal2d", "postfix": 2}, in_channels=8)
    assert name == "nonlocal_block2" and isinstance(block, NonLocal2d)
    with pytest.raises(ValueError, match="in_channels"):
        build_plugin_layer({"type": "ContextBlock", "ratio": 0.25, "in_channels": 3}, in_channels=8)
    with pytest.raises(KeyError, match="type"):
        build_plugin_layer({"ratio": 0.25}, in_channels=8)
