"""BFP: output shapes, the gather / refine / scatter steps by hand on tiny maps, the non-local refine
being the identity at init, and the neck list of the detectors (neck.0 = FPN, neck.1 = BFP)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore

pytest.importorskip("det_plugin_libra", reason="det-plugin-libra is not installed")


def bfp(**kwargs) -> torch.nn.Module:
    return detcore.build("neck", {"type": "BFP", **kwargs})


def test_output_shapes_equal_the_input_shapes():
    neck = bfp(in_channels=8, num_levels=5, refine_level=2, refine_type="non_local")
    neck.init_weights()
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    inputs = [torch.randn(2, 8, h, w) for h, w in sizes]
    outs = neck(inputs)
    assert [tuple(o.shape) for o in outs] == [(2, 8, h, w) for h, w in sizes]


def test_gather_and_scatter_by_hand():
    """Levels of 4x4, 2x2 and 1x1 gathered at level 1 (2x2): level 0 max-pooled over its 2x2 blocks,
    level 2 repeated; the average is added back (repeated to 4x4, max-pooled to 1x1)."""
    l0 = torch.tensor([[1.0, 2.0, 0.0, 4.0],
                       [3.0, 0.0, 5.0, 1.0],
                       [0.0, 0.0, 6.0, 6.0],
                       [0.0, 9.0, 6.0, 2.0]])[None, None]  # fmt: skip
    l1 = torch.tensor([[3.0, 0.0], [6.0, 3.0]])[None, None]
    l2 = torch.tensor([[6.0]])[None, None]
    neck = bfp(in_channels=1, num_levels=3, refine_level=1, refine_type=None)
    # block maxima of l0: [[3, 5], [9, 6]]; (pooled + l1 + 6) / 3
    expected_bsf = torch.tensor([[(3 + 3 + 6) / 3, (5 + 0 + 6) / 3], [(9 + 6 + 6) / 3, (6 + 3 + 6) / 3]])
    torch.testing.assert_close(neck.gather([l0, l1, l2])[0, 0], expected_bsf)
    o0, o1, o2 = neck([l0, l1, l2])
    up = expected_bsf.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(o0[0, 0], l0[0, 0] + up)
    torch.testing.assert_close(o1[0, 0], l1[0, 0] + expected_bsf)
    torch.testing.assert_close(o2[0, 0], torch.tensor([[6.0 + 7.0]]))  # max of the average is 21/3


def test_non_local_refine_is_the_identity_at_init_and_not_after_a_change():
    neck = bfp(in_channels=4, num_levels=3, refine_level=1, refine_type="non_local")
    neck.init_weights()  # Xavier first, then the non-local block's own init (conv_out zero)
    assert float(neck.refine.conv_out.conv.weight.detach().abs().sum()) == 0.0
    assert float(neck.refine.g.conv.weight.detach().std()) < 0.05  # Normal(0.01), not Xavier
    inputs = [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)]
    plain = bfp(in_channels=4, num_levels=3, refine_level=1, refine_type=None)
    for got, want in zip(neck(inputs), plain(inputs)):
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        neck.refine.conv_out.conv.weight.fill_(0.1)
    assert not torch.allclose(neck(inputs)[1], plain(inputs)[1])


def test_conv_refine_and_bad_arguments():
    neck = bfp(in_channels=4, num_levels=2, refine_level=0, refine_type="conv")
    assert tuple(neck.refine.conv.weight.shape) == (4, 4, 3, 3)
    with pytest.raises(ValueError, match="refine_type"):
        bfp(in_channels=4, num_levels=2, refine_type="attention")
    with pytest.raises(ValueError, match="refine_level"):
        bfp(in_channels=4, num_levels=2, refine_level=2)
    with pytest.raises(ValueError, match="expected 2 levels"):
        neck([torch.zeros(1, 4, 4, 4)])


def test_a_neck_list_chains_in_order_with_indexed_keys():
    from detcore.models.detectors.base import build_neck

    chain = build_neck([
        {"type": "FPN", "in_channels": [4, 8], "out_channels": 4, "num_outs": 3},
        {"type": "BFP", "in_channels": 4, "num_levels": 3, "refine_level": 1, "refine_type": "non_local"},
    ])
    chain.init_weights()
    keys = list(chain.state_dict())
    assert keys[0].startswith("0.lateral_convs") and "1.refine.g.conv.weight" in keys
    with torch.no_grad():
        chain[1].refine.conv_out.conv.weight.normal_()  # a refine that changes its input
    x = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8)]
    outs = chain(x)
    fpn_outs = chain[0](x)
    assert [tuple(o.shape) for o in outs] == [(1, 4, 16, 16), (1, 4, 8, 8), (1, 4, 4, 4)]
    for got, want in zip(outs, chain[1](fpn_outs)):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(outs[1], fpn_outs[1])
    with pytest.raises(ValueError, match="empty list"):
        build_neck([])


def test_a_misspelt_key_in_a_neck_list_item_is_named_with_its_index(tmp_path):
    from detcore.errors import ConfigError
    from detcore.testing import load_validated_config

    base = Path(__file__).resolve().parents[3] / "configs" / "libra_rcnn"
    base = base / "libra_retinanet_r50_fpn_1x_coco.toml"
    child = tmp_path / "child.toml"
    child.write_text(f'extends = ["{base}"]\n\n[model]\nneck = {{ 1 = {{ refine_levle = 1 }} }}\n')
    with pytest.raises(ConfigError, match=r"model\.neck\.1\.refine_levle.*nearest valid key: 'refine_level'"):
        load_validated_config(child)
    patched = tmp_path / "patched.toml"
    patched.write_text(f'extends = ["{base}"]\n\n[model]\nneck = {{ 1 = {{ refine_level = 3 }} }}\n')
    neck = load_validated_config(patched)["model"]["neck"]
    assert neck[0]["type"] == "FPN" and neck[1]["refine_level"] == 3
