"""AnchorFreeHead: tower structure, conv bias / norm / DCN switches, points, forward shapes, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detcore.models.dense_heads.anchor_free_head import AnchorFreeHead, Scale
from detcore.models.layers import ConvModule


class _Head(AnchorFreeHead):
    """The smallest concrete subclass: targets are not needed to test the shared structure."""

    def loss_by_feat(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise NotImplementedError

    def get_targets(self, points, gt_bboxes_list, gt_labels_list):  # noqa: ANN001, ANN201
        raise NotImplementedError


def _head(**kwargs) -> _Head:
    args = {"num_classes": 3, "in_channels": 8, "feat_channels": 8, "stacked_convs": 2, "strides": (8, 16)}
    args.update(kwargs)
    return _Head(**args)


def test_towers_predictors_and_state_dict_names():
    head = _head(norm_cfg={"type": "GN", "num_groups": 4})
    keys = list(head.state_dict())
    assert keys == [
        "cls_convs.0.conv.weight",
        "cls_convs.0.gn.weight",
        "cls_convs.0.gn.bias",
        "cls_convs.1.conv.weight",
        "cls_convs.1.gn.weight",
        "cls_convs.1.gn.bias",
        "reg_convs.0.conv.weight",
        "reg_convs.0.gn.weight",
        "reg_convs.0.gn.bias",
        "reg_convs.1.conv.weight",
        "reg_convs.1.gn.weight",
        "reg_convs.1.gn.bias",
        "conv_cls.weight",
        "conv_cls.bias",
        "conv_reg.weight",
        "conv_reg.bias",
    ]
    assert all(isinstance(m, ConvModule) for m in [*head.cls_convs, *head.reg_convs])
    assert head.conv_cls.out_channels == 3  # sigmoid focal loss by default: no background column
    assert head.cls_convs[0].conv.kernel_size == (3, 3) and head.cls_convs[0].conv.padding == (1, 1)


def test_conv_bias_auto_and_explicit():
    assert head_has_bias(_head(norm_cfg=None)) is True  # auto: no norm -> bias
    assert head_has_bias(_head(norm_cfg={"type": "GN", "num_groups": 4})) is False
    assert head_has_bias(_head(norm_cfg={"type": "GN", "num_groups": 4}, conv_bias=True)) is True
    with pytest.raises(ValueError, match="conv_bias"):
        _head(conv_bias="yes")


def head_has_bias(head: AnchorFreeHead) -> bool:
    flags = {m.conv.bias is not None for m in [*head.cls_convs, *head.reg_convs]}
    assert len(flags) == 1
    return flags.pop()


def test_softmax_classifier_has_background_channel():
    head = _head(loss_cls={"type": "CrossEntropyLoss", "use_sigmoid": False})
    assert head.cls_out_channels == 4 and head.conv_cls.out_channels == 4


def test_dcn_on_last_conv_only():
    from detcore.ops import ModulatedDeformConv2dPack

    head = _head(dcn_on_last_conv=True)
    assert not isinstance(head.cls_convs[0].conv, ModulatedDeformConv2dPack)
    assert isinstance(head.cls_convs[1].conv, ModulatedDeformConv2dPack)
    assert isinstance(head.reg_convs[1].conv, ModulatedDeformConv2dPack)
    feats = [torch.randn(1, 8, 6, 6), torch.randn(1, 8, 3, 3)]
    cls, reg = head(feats)
    assert [tuple(c.shape) for c in cls] == [(1, 3, 6, 6), (1, 3, 3, 3)]
    assert [tuple(r.shape) for r in reg] == [(1, 4, 6, 6), (1, 4, 3, 3)]


def test_forward_single_returns_tower_features():
    head = _head()
    x = torch.randn(2, 8, 5, 7)
    cls_score, bbox_pred, cls_feat, reg_feat = head.forward_single(x)
    assert cls_score.shape == (2, 3, 5, 7) and bbox_pred.shape == (2, 4, 5, 7)
    assert cls_feat.shape == reg_feat.shape == (2, 8, 5, 7)
    # the towers are independent: the cls tower's output is its own convs applied in order
    expected = head.cls_convs[1](head.cls_convs[0](x))
    assert torch.allclose(cls_feat, expected)
    assert torch.allclose(cls_score, head.conv_cls(expected))


def test_points_are_cell_centres_at_half_stride():
    head = _head(strides=(8, 16))
    # the 2.x interface: integer (y, x) cell grids, flattened row-major on request
    y, x = head._get_points_single((2, 3), 8, torch.float32, "cpu")
    assert y.tolist() == [[0, 0, 0], [1, 1, 1]] and x.tolist() == [[0, 1, 2], [0, 1, 2]]
    yf, xf = head._get_points_single((2, 3), 8, torch.float32, "cpu", flatten=True)
    assert yf.tolist() == [0, 0, 0, 1, 1, 1] and xf.tolist() == [0, 1, 2, 0, 1, 2]
    # the prior generator puts the point of cell (i, j) at (j * s + s // 2, i * s + s // 2)
    pts = head.prior_generator.grid_priors([(2, 3), (1, 2)], device="cpu")
    assert pts[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert pts[1].tolist() == [[8, 8], [24, 8]]
    assert head.num_base_priors == 1


def test_default_init_normal_and_prior_bias():
    torch.manual_seed(0)
    head = _head(feat_channels=64, in_channels=64, stacked_convs=1)
    head.init_weights()
    prior_bias = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(head.conv_cls.bias, torch.full_like(head.conv_cls.bias, prior_bias))
    assert torch.all(head.conv_reg.bias == 0)
    # N(0, 0.01) everywhere, the tower convs included (their kaiming init is overridden)
    for w in (head.conv_cls.weight, head.conv_reg.weight, head.cls_convs[0].conv.weight):
        assert abs(w.std().item() - 0.01) < 0.002 and abs(w.mean().item()) < 0.002


def test_is_abstract_and_validates():
    with pytest.raises(TypeError):
        AnchorFreeHead(num_classes=2, in_channels=4)  # get_targets / loss_by_feat not implemented
    with pytest.raises(ValueError, match="num_classes"):
        _head(num_classes=0)


def test_scale_module():
    s = Scale(2.5)
    assert isinstance(s.scale, nn.Parameter) and s.scale.shape == ()
    assert torch.equal(s(torch.tensor([1.0, -2.0])), torch.tensor([2.5, -5.0]))
    assert list(s.state_dict()) == ["scale"]


def test_early_predictor_names_load():
    src = _head()
    old = {}
    for key, value in src.state_dict().items():
        old[key.replace("conv_cls", "fcos_cls").replace("conv_reg", "fcos_reg")] = value
    assert "fcos_cls.weight" in old and "conv_cls.weight" not in old
    dst = _head()
    result = dst.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(dst.conv_cls.weight, src.conv_cls.weight)
    assert torch.equal(dst.conv_reg.bias, src.conv_reg.bias)
    # an unknown name that fits no predictor stays unexpected
    with pytest.raises(RuntimeError, match="fcos_other"):
        dst.load_state_dict({**src.state_dict(), "fcos_other.weight": torch.zeros(1)}, strict=True)
