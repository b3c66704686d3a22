"""The ResNet ``plugins`` option: which stages and positions get a block, with which channels, in which
order they run, and that a fresh backbone with context / attention blocks computes what the plain one does."""

from __future__ import annotations

import pytest
import torch
from det_plugin_resnet import Bottleneck, ResNet, ResNeXt

from detcore.models.layers import ContextBlock, GeneralizedAttention, NonLocal2d

pytestmark = pytest.mark.usefixtures("one_thread")

GCB = {
    "cfg": {"type": "ContextBlock", "ratio": 0.25},
    "stages": [False, True, True, True],
    "position": "after_conv3",
}
ATT = {
    "cfg": {"type": "GeneralizedAttention", "num_heads": 2, "attention_type": "1111", "kv_stride": 2},
    "stages": [False, False, True, True],
    "position": "after_conv2",
}


def small(**kwargs) -> ResNet:
    return ResNet(depth=50, base_channels=8, norm_cfg={"type": "GN", "num_groups": 4}, **kwargs)


def test_context_blocks_go_into_every_bottleneck_of_c3_to_c5():
    model = small(plugins=[GCB])
    for stage, layer in enumerate([model.layer1, model.layer2, model.layer3, model.layer4]):
        for block in layer:
            assert hasattr(block, "context_block") == (stage > 0), (stage, block)
            if stage > 0:  # after conv3: the block's output channels, 4 * planes
                assert block.context_block.in_channels == 4 * 8 * 2**stage
                assert block.plugin_names == {
                    "after_conv1": [],
                    "after_conv2": [],
                    "after_conv3": ["context_block"],
                }
    keys = list(model.state_dict())
    first = keys.index("layer2.0.context_block.conv_mask.weight")
    assert keys[first - 1].startswith("layer2.0.downsample.")  # after the block's own keys, as the reference
    assert not any(k.startswith("layer1.") and "context_block" in k for k in keys)


def test_attention_blocks_after_conv2_take_the_inner_width():
    model = small(plugins=[ATT])
    assert not hasattr(model.layer2[0], "gen_attention_block")
    assert model.layer3[0].gen_attention_block.in_channels == 8 * 4  # width of stage 3 (planes)
    assert model.layer4[2].gen_attention_block.in_channels == 8 * 8
    resnext = ResNeXt(depth=50, groups=4, base_width=4, base_channels=8, plugins=[ATT])
    assert resnext.layer3[0].gen_attention_block.in_channels == resnext.layer3[0].width == 64


def test_plugins_without_stages_go_everywhere_and_run_in_order():
    """Two non-local blocks after conv1 (postfixes 1 and 2) in every stage: the second block's input is
    the first one's output, whose input is relu(norm1(conv1(x)))."""
    plugins = [
        {"cfg": {"type": "NonLocal2d", "postfix": 1, "zeros_init": False}, "position": "after_conv1"},
        {"cfg": {"type": "NonLocal2d", "postfix": 2, "zeros_init": False}, "position": "after_conv1"},
    ]
    model = small(plugins=plugins).eval()
    block = model.layer1[1]
    assert isinstance(block.nonlocal_block1, NonLocal2d) and isinstance(
        model.layer4[0].nonlocal_block2, NonLocal2d
    )
    assert block.plugin_names["after_conv1"] == ["nonlocal_block1", "nonlocal_block2"]
    seen = {}
    for name in ("nonlocal_block1", "nonlocal_block2", "conv2"):
        getattr(block, name).register_forward_hook(lambda m, i, o, name=name: seen.update({name: (i[0], o)}))
    x = torch.randn(1, 32, 6, 6)
    with torch.no_grad():
        block(x)
        first_in = block.relu(block.norm1(block.conv1(x)))
    assert torch.allclose(seen["nonlocal_block1"][0], first_in)
    assert torch.equal(seen["nonlocal_block2"][0], seen["nonlocal_block1"][1])
    assert torch.equal(seen["conv2"][0], seen["nonlocal_block2"][1])


@pytest.mark.parametrize("plugin", [GCB, ATT])
def test_a_fresh_backbone_with_blocks_computes_what_the_plain_one_does(plugin):
    """Default initialisation: the blocks come back to their own init after the ResNet's Kaiming pass
    (zero last conv / zero gamma), so the backbone equals the plain one with the same weights."""
    torch.manual_seed(0)
    with_blocks = small(plugins=[plugin], norm_eval=False)
    with_blocks.init_weights()
    plain = small(norm_eval=False)
    missing, unexpected = plain.load_state_dict(with_blocks.state_dict(), strict=False)
    assert (
        not missing
        and unexpected
        and all(("context_block" in k) or ("gen_attention" in k) for k in unexpected)
    )
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        for a, b in zip(with_blocks(x), plain(x)):
            assert torch.equal(a, b)
    blocks = [m for m in with_blocks.modules() if isinstance(m, (ContextBlock, GeneralizedAttention))]
    assert blocks and all(
        (b.gamma == 0).all()
        if isinstance(b, GeneralizedAttention)
        else (b.channel_add_conv[-1].weight == 0).all()
        for b in blocks
    )


def test_bad_plugin_tables_are_refused_with_the_key():
    with pytest.raises(ValueError, match="position must be one of"):
        small(plugins=[dict(GCB, position="after_conv4")])
    with pytest.raises(ValueError, match=r"stages .* one entry per stage \(4\)"):
        small(plugins=[dict(GCB, stages=[True, True])])
    with pytest.raises(ValueError, match="unknown keys"):
        small(plugins=[dict(GCB, stage=[True] * 4)])
    with pytest.raises(ValueError, match="Bottleneck"):
        ResNet(depth=18, plugins=[GCB])
    with pytest.raises(ValueError, match="postfix"):
        small(plugins=[GCB, GCB])
    assert isinstance(small(plugins=[]).layer2[0], Bottleneck)
