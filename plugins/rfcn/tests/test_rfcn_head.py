"""R-FCN: the head's position-sensitive voting on hand-made score maps, the paper's layout of the standard
config, the loss names and a few training steps lowering the losses on a painted batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import check_loss_falls, fake_batch, load_validated_config

pytest.importorskip("det_plugin_rfcn", reason="det-plugin-rfcn is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")

from det_plugin_rfcn import RFCNHead  # noqa: E402

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "rfcn" / "rfcn_r101_caffe_dc5_1x_coco.toml"


def test_bins_vote_by_average_over_their_own_score_map_group():
    head = RFCNHead(in_channels=4, conv_new_channels=4, group_size=2, spatial_scale=1.0, num_classes=2)
    k, c1 = 2, 3
    # cls map channel (d * k + i) * k + j holds the constant 10 * d + (2 * i + j): bin (i, j) of class d
    # scores
    # 10 * d + 2 * i + j, and the vote is the mean over the 4 bins: 10 * d + 1.5
    consts = torch.tensor([10.0 * d + 2 * i + j for d in range(c1) for i in range(k) for j in range(k)])
    cls_maps = consts.view(1, -1, 1, 1).expand(1, c1 * k * k, 8, 8).contiguous()
    reg_maps = torch.arange(16.0).view(1, 16, 1, 1).expand(1, 16, 8, 8).contiguous()
    head.score_maps = lambda x: (cls_maps, reg_maps)  # type: ignore[method-assign]
    rois = torch.tensor([[0, 0.0, 0.0, 5.0, 5.0], [0, 2.0, 1.0, 7.0, 6.0]])
    cls_score, bbox_pred = head(torch.zeros(1, 4, 8, 8), rois)
    torch.testing.assert_close(cls_score, torch.tensor([[1.5, 11.5, 21.5]] * 2))
    # 4 class-agnostic deltas: delta r averages reg channels 4r .. 4r + 3 -> 4r + 1.5
    torch.testing.assert_close(bbox_pred, torch.tensor([[1.5, 5.5, 9.5, 13.5]] * 2))


def test_standard_config_follows_the_paper():
    table = load_validated_config(CONFIG).to_dict()["model"]
    with torch.device("meta"):
        model = detcore.build("detector", table)
    head = model.roi_head.bbox_head
    conv_new = head.conv_new
    assert (conv_new.in_channels, conv_new.out_channels, conv_new.kernel_size) == (2048, 1024, (1, 1))
    assert head.conv_cls.out_channels == 7 * 7 * 81 and head.conv_reg.out_channels == 7 * 7 * 4
    assert head.spatial_scale == 1 / 16 and head.reg_class_agnostic
    assert [k for k in model.state_dict() if k.startswith("roi_head")] == [
        f"roi_head.bbox_head.{n}.{p}"
        for n in ("conv_new", "conv_cls", "conv_reg")
        for p in ("weight", "bias")
    ]
    assert sum(p.numel() for p in model.parameters()) == 86_771_920


def tiny_rfcn() -> torch.nn.Module:
    table = load_validated_config(CONFIG).to_dict()["model"]
    table["backbone"].update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None, norm_eval=False,
                             norm_cfg={"type": "GN", "num_groups": 8})  # fmt: skip
    table["rpn_head"].update(in_channels=128, feat_channels=64)
    table["roi_head"]["bbox_head"].update(in_channels=128, conv_new_channels=64, group_size=3, num_classes=3)
    torch.manual_seed(0)
    model = detcore.build("detector", table)
    model.init_weights()
    return model


def test_rfcn_trains():
    model = tiny_rfcn()
    batch = fake_batch(num_images=2, img_size=(96, 96), num_classes=3, boxes_per_image=2)
    model.train()
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= set(model(**batch))
    check_loss_falls(model, batch, iterations=12, lr=1e-3, optimizer="adam",
                     keys=("loss", "loss_rpn_cls", "loss_cls"), ratio=0.8)  # fmt: skip
    model.eval()
    with torch.no_grad():
        dets = model(**{k: v for k, v in batch.items() if k in ("imgs", "img_metas")})
    assert len(dets) == 2 and dets[0].bboxes.shape[1] == 4
