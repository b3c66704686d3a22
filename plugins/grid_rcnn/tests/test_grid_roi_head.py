"""GridRoIHead: the jittered RoIs, the losses it returns, max_num_grid, and test-time boxes coming
from the grid head."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("det_plugin_grid_rcnn", reason="det-plugin-grid-rcnn is not installed")

from det_plugin_grid_rcnn import GridRoIHead, random_jitter  # noqa: E402

import detcore  # noqa: E402
from detcore.structures.instances import Instances  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_jittered_rois_stay_valid():
    torch.manual_seed(0)
    xy = torch.rand(500, 2) * 80
    boxes = torch.cat([xy, xy + 5 + torch.rand(500, 2) * 40], dim=1)
    free = random_jitter(boxes, None)
    wh, new_wh = boxes[:, 2:] - boxes[:, :2], free[:, 2:] - free[:, :2]
    shift = ((free[:, :2] + free[:, 2:]) - (boxes[:, :2] + boxes[:, 2:])) / 2
    assert (shift.abs() <= 0.15 * wh + 1e-4).all()
    assert ((new_wh >= 0.85 * wh - 1e-4) & (new_wh <= 1.15 * wh + 1e-4)).all()
    assert shift.abs().max() > 0.1 * wh.min()  # it does move them
    clipped = random_jitter(boxes, (100, 90, 3))
    assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 0::2] <= 89).all()
    assert (clipped[:, 1::2] >= 0).all() and (clipped[:, 1::2] <= 99).all()
    assert (clipped[:, 2:] >= clipped[:, :2]).all()
    assert torch.equal(boxes, torch.cat([xy, boxes[:, 2:]], dim=1))  # the input is left alone


def head_table(max_num_grid: int = 4) -> dict:
    extractor = {"type": "SingleRoIExtractor", "out_channels": 8, "featmap_strides": [4]}
    align = {"type": "RoIAlign", "sampling_ratio": 0}
    return {
        "type": "GridRoIHead",
        "bbox_roi_extractor": dict(extractor, roi_layer=dict(align, output_size=7)),
        "bbox_head": {"type": "Shared2FCBBoxHead", "with_reg": False, "in_channels": 8, "fc_out_channels": 16,
                      "num_classes": 3},
        "grid_roi_extractor": dict(extractor, roi_layer=dict(align, output_size=14)),
        "grid_head": {"type": "GridHead", "num_convs": 2, "in_channels": 8, "point_feat_channels": 4,
                      "norm_cfg": {"type": "GN", "num_groups": 9}},
        "train_cfg": {
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5,
                         "min_pos_iou": 0.5},
            "sampler": {"type": "RandomSampler", "num": 32, "pos_fraction": 0.25,
                        "add_gt_as_proposals": True},
            "pos_radius": 1, "max_num_grid": max_num_grid,
        },
        "test_cfg": {"score_thr": 0.0, "nms": {"type": "nms", "iou_threshold": 0.3}, "max_per_img": 100},
    }  # fmt: skip


def build_head(**kw) -> GridRoIHead:
    torch.manual_seed(0)
    head = detcore.build("roi_head", head_table(**kw))
    head.init_weights()
    return head


def batch():
    feats = [torch.randn(2, 8, 16, 16)]
    metas = [{"img_shape": (64, 64, 3), "scale_factor": [2.0, 2.0, 2.0, 2.0]} for _ in range(2)]
    gts = [Instances(bboxes=torch.tensor([[8.0, 8.0, 40.0, 36.0], [30.0, 20.0, 60.0, 60.0]]),
                     labels=torch.tensor([0, 2])),
           Instances(bboxes=torch.tensor([[4.0, 10.0, 30.0, 50.0]]), labels=torch.tensor([1]))]  # fmt: skip
    proposals = [Instances(bboxes=g.bboxes + torch.tensor([1.0, -1.0, 2.0, 1.0])) for g in gts]
    return feats, proposals, gts, metas


def test_losses_and_max_num_grid():
    head = build_head(max_num_grid=4)
    assert not head.bbox_head.with_reg
    seen = []
    head.grid_head.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    feats, proposals, gts, metas = batch()
    head.train()
    losses = head.loss(feats, proposals, gts, metas)
    assert set(losses) == {"loss_cls", "acc", "loss_grid"}  # no regressor: no loss_bbox
    assert seen == [torch.Size([4, 8, 14, 14])]  # 6 positives (3 gts + 3 proposals), 4 kept
    losses["loss_grid"].backward()
    assert head.grid_head.deconv2.weight.grad.abs().sum() > 0
    assert head.bbox_head.shared_fcs[0].weight.grad is None  # the grid loss does not reach the box head


def test_no_positives_means_no_grid_loss():
    head = build_head()
    feats, _, _, metas = batch()
    empty = [Instances(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)) for _ in range(2)]
    proposals = [Instances(bboxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]])) for _ in range(2)]
    assert "loss_grid" not in head.loss(feats, proposals, empty, metas)


def test_predict_boxes_come_from_the_grid_head(monkeypatch):
    """Heatmaps that put every point's peak at the same heatmap pixel: the decoded boxes are the grid
    head's, clipped to the image, divided by the scale factor with rescale."""
    head = build_head()
    head.eval()
    feats, proposals, _, metas = batch()

    def fixed(feats_, rois):
        maps = torch.full((rois.shape[0], 9, 28, 28), -10.0)
        maps[:, :, 3, 25] = 5.0
        return {"fused": maps, "unfused": maps}

    monkeypatch.setattr(head, "_grid_forward", fixed)
    plain = head.predict_bbox(feats, metas, proposals, head.test_cfg, rescale=False)
    # the box branch alone keeps the proposals' boxes
    kept = super(GridRoIHead, head).predict_bbox(feats, metas, proposals, head.test_cfg)
    for res, ref in zip(plain, kept):
        assert len(res.bboxes) == len(ref.bboxes) > 0
        expected = head.grid_head.decode(ref.bboxes, fixed(None, torch.zeros(len(ref.bboxes), 5))["fused"])
        expected[:, 0::2] = expected[:, 0::2].clamp(0, 64)
        expected[:, 1::2] = expected[:, 1::2].clamp(0, 64)
        assert torch.allclose(res.bboxes, expected)
        assert torch.equal(res.scores, ref.scores) and torch.equal(res.labels, ref.labels)
    scaled = head.predict_bbox(feats, metas, proposals, head.test_cfg, rescale=True)
    assert torch.allclose(scaled[0].bboxes * 2, plain[0].bboxes)


def test_mask_branch_refused():
    table = head_table()
    table["mask_head"] = {"type": "FCNMaskHead", "num_classes": 3, "in_channels": 8}
    table["train_cfg"]["mask_size"] = 28
    table["test_cfg"]["mask_thr_binary"] = 0.5
    with pytest.raises(ValueError, match="mask branch"):
        detcore.build("roi_head", table)
