"""The C4 RoI shared head (ResLayer): layout of the reference checkpoints, equivalence with the backbone's
res5 stage, frozen batch norms, and start from a backbone checkpoint."""

from __future__ import annotations

import pytest
import torch

import detcore
from detcore.testing import reference_keys_or_skip

shared_heads = pytest.importorskip("det_plugin_rcnn.shared_heads", reason="det-plugin-rcnn is not installed")
ResLayer = shared_heads.ResLayer

CAFFE_BN = {"type": "BN", "requires_grad": False}


def c4_head(**kwargs) -> ResLayer:
    cfg = dict(depth=50, stage=3, stride=2, dilation=1, style="caffe", norm_cfg=CAFFE_BN, norm_eval=True)
    cfg.update(kwargs)
    return ResLayer(**cfg)


def test_layout_matches_the_reference_c4_shared_head():
    # TridentNet's reference checkpoint carries the C4 Faster R-CNN shared head under this prefix
    prefix = "roi_head.shared_head."
    entries = reference_keys_or_skip("tridentnet_r50_caffe_1x_coco").entries
    expected = [(k[len(prefix) :], s) for k, s in entries if k.startswith(prefix)]
    with torch.device("meta"):
        head = c4_head()
    assert [(k, tuple(v.shape)) for k, v in head.state_dict().items()] == expected
    assert sum(p.numel() for p in head.parameters()) == sum(
        torch.Size(s).numel()
        for k, s in expected
        if not k.endswith(("running_mean", "running_var", "tracked"))
    )


def test_equals_the_backbone_res5_stage_with_the_same_weights():
    backbone = detcore.build(
        "backbone",
        {"type": "ResNet", "depth": 50, "style": "caffe", "norm_cfg": CAFFE_BN, "out_indices": [3]},
    )
    backbone.init_weights()
    head = c4_head()
    missing, unexpected = head.load_state_dict(
        {k: v for k, v in backbone.state_dict().items() if k.startswith("layer4.")}, strict=True
    )
    assert not missing and not unexpected
    backbone.eval(), head.eval()
    rois = torch.randn(3, 1024, 14, 14)
    out = head(rois)
    assert out.shape == (3, 2048, 7, 7)
    torch.testing.assert_close(out, backbone.layer4(rois))
    # caffe style: the stride sits on the first 1x1 conv of block 0
    assert head.layer4[0].conv1.stride == (2, 2) and head.layer4[0].conv2.stride == (1, 1)


def test_norm_eval_keeps_batch_norms_frozen_in_training():
    head = c4_head(norm_cfg={"type": "BN", "requires_grad": True}).train()
    assert head.training and not any(
        m.training for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    head = c4_head(norm_cfg={"type": "BN", "requires_grad": True}, norm_eval=False).train()
    assert all(m.training for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not any(p.requires_grad for n, p in c4_head().named_parameters() if ".bn" in n)


def test_starts_from_a_backbone_checkpoint(tmp_path):
    backbone = detcore.build(
        "backbone", {"type": "ResNet", "depth": 50, "style": "caffe", "norm_cfg": CAFFE_BN}
    )
    torch.manual_seed(3)
    backbone.init_weights()
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)  # not the fresh default, so a load is visible
    path = tmp_path / "resnet50_caffe.pth"
    torch.save({"state_dict": backbone.state_dict()}, path)
    head = c4_head(init_cfg={"type": "Pretrained", "checkpoint": str(path)})
    head.init_weights()
    torch.testing.assert_close(head.layer4[2].conv3.weight, backbone.layer4[2].conv3.weight)
    torch.testing.assert_close(
        head.layer4[0].downsample[1].running_var, backbone.layer4[0].downsample[1].running_var
    )


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(KeyError, match="depth 42"):
        ResLayer(depth=42)
    with pytest.raises(ValueError, match="stage"):
        ResLayer(depth=50, stage=4)
    with pytest.raises(ValueError, match=r"\(N, 1024, H, W\)"):
        c4_head()(torch.zeros(1, 256, 7, 7))
