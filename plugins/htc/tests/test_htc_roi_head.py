"""HybridTaskCascadeRoIHead on hand-made features: the mask information flow (stage i's masks change when
an earlier stage's mask head changes, never when a later one does, and not at all without the flow),
the semantic branch's pooled features added to the box and mask RoI features (exactly), interleaving
(the mask branch trains on the refined boxes re-sampled by the same stage), the test-time single pass
equal to the per-stage training path, and the configuration errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.models.utils import bbox2roi
from detcore.structures import Instances
from detcore.structures.masks import BitmapMasks

pytest.importorskip("det_plugin_htc", reason="det-plugin-htc is not installed")

C = 8
NUM_CLASSES = 3
IOUS = (0.5, 0.6, 0.7)
STDS = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
STRIDES = [4, 8, 16]
ROI_ALIGN_14 = {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0}


def _table(semantic: bool = True, mask_info_flow: bool = True, interleaved: bool = True) -> dict:
    extractor = {"type": "SingleRoIExtractor", "roi_layer": {"type": "RoIAlign", "output_size": 7,
                 "sampling_ratio": 0}, "out_channels": C, "featmap_strides": STRIDES}  # fmt: skip
    table = {
        "type": "HybridTaskCascadeRoIHead",
        "num_stages": 3,
        "stage_loss_weights": [1.0, 0.5, 0.25],
        "interleaved": interleaved,
        "mask_info_flow": mask_info_flow,
        "bbox_roi_extractor": extractor,
        "bbox_head": [
            {"type": "Shared2FCBBoxHead", "in_channels": C, "fc_out_channels": 16, "roi_feat_size": 7,
             "num_classes": NUM_CLASSES, "reg_class_agnostic": True,
             "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": s}}
            for s in STDS
        ],
        "mask_roi_extractor": dict(extractor, roi_layer=ROI_ALIGN_14),
        "mask_head": [
            {"type": "HTCMaskHead", "with_conv_res": i > 0, "num_convs": 2, "in_channels": C,
             "conv_out_channels": C, "num_classes": NUM_CLASSES}
            for i in range(3)
        ],
        "train_cfg": [
            {"assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": t, "neg_iou_thr": t, "min_pos_iou": t,
                          "match_low_quality": False, "ignore_iof_thr": -1},
             "sampler": {"type": "RandomSampler", "num": 32, "pos_fraction": 0.25, "neg_pos_ub": -1,
                         "add_gt_as_proposals": True},
             "pos_weight": -1, "mask_size": 28}
            for t in IOUS
        ],
        "test_cfg": {"score_thr": 0.0, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20,
                     "mask_thr_binary": 0.5},
    }  # fmt: skip
    if semantic:
        table["semantic_roi_extractor"] = dict(
            extractor,
            roi_layer={"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0},
            featmap_strides=[8],
        )
        table["semantic_head"] = {"type": "FusedSemanticHead", "num_ins": 3, "fusion_level": 1,
                                  "num_convs": 1,
                                  "in_channels": C, "conv_out_channels": C, "num_classes": 4}  # fmt: skip
    return table


def make_head(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    head = detcore.build("roi_head", _table(**kw))
    head.init_weights()
    return head


FEATS = [torch.randn(1, C, 64 // s, 64 // s, generator=torch.Generator().manual_seed(s)) for s in STRIDES]
ROIS = bbox2roi([torch.tensor([[4.0, 4.0, 30.0, 40.0], [20.0, 10.0, 60.0, 50.0], [0.0, 0.0, 63.0, 63.0]])])
META = {"img_shape": (64, 64, 3), "pad_shape": (64, 64, 3), "ori_shape": (64, 64, 3),
        "scale_factor": [1.0] * 4, "batch_input_shape": (64, 64)}  # fmt: skip


def _stage_logits(head, semantic_feat=None) -> list[torch.Tensor]:
    with torch.no_grad():
        return [
            head.mask_forward(i, FEATS, ROIS, semantic_feat=semantic_feat)["mask_preds"] for i in range(3)
        ]


def _perturbed(head, stage: int):
    other = copy.deepcopy(head)
    with torch.no_grad():
        for p in other.mask_head[stage].convs.parameters():
            p.add_(0.5)
    return other


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_mask_information_flow_reaches_later_stages_only(stage):
    head = make_head(semantic=False)
    before, after = _stage_logits(head), _stage_logits(_perturbed(head, stage))
    for i in range(3):
        changed = not torch.equal(before[i], after[i])
        assert changed == (i >= stage), (
            f"perturbing mask_head.{stage} {'changed' if changed else 'kept'} stage {i}"
        )


def test_stage_logits_are_the_heads_chained_on_the_same_roi_features():
    head = make_head(semantic=False)
    with torch.no_grad():
        feats = head.mask_roi_extractor[0](FEATS, ROIS)
        f0 = head.mask_head[0](feats, return_logits=False)
        f1 = head.mask_head[1](feats, f0, return_logits=False)
        expected = [head.mask_head[0](feats, return_feat=False),
                    head.mask_head[1](feats, f0, return_feat=False),
                    head.mask_head[2](feats, f1, return_feat=False)]  # fmt: skip
    for got, want in zip(_stage_logits(head), expected):
        torch.testing.assert_close(got, want)


def test_without_mask_information_flow_the_stages_are_independent():
    head = make_head(semantic=False, mask_info_flow=False)
    before, after = _stage_logits(head), _stage_logits(_perturbed(head, 0))
    assert not torch.equal(before[0], after[0])
    assert torch.equal(before[1], after[1]) and torch.equal(before[2], after[2])


def _zero_semantic(head):
    other = copy.deepcopy(head)
    with torch.no_grad():
        other.semantic_head.conv_embedding.conv.weight.zero_()
        other.semantic_head.conv_embedding.conv.bias.zero_()
    return other


def test_semantic_features_are_added_to_the_box_and_mask_roi_features():
    head = make_head()
    zero = _zero_semantic(head)
    with torch.no_grad():
        semantic_feat = head.semantic_head(FEATS)[1]
        assert semantic_feat.shape == (1, C, 8, 8) and semantic_feat.abs().sum() > 0
        assert zero.semantic_head(FEATS)[1].abs().sum() == 0
        pooled = head.semantic_roi_extractor([semantic_feat], ROIS)  # (K, C, 14, 14)
        for stage in range(3):
            with_sem = head.bbox_forward(stage, FEATS, ROIS, semantic_feat=semantic_feat)
            without = zero.bbox_forward(stage, FEATS, ROIS, semantic_feat=zero.semantic_head(FEATS)[1])
            plain = head.bbox_roi_extractor[stage](FEATS, ROIS)
            torch.testing.assert_close(without["bbox_feats"], plain)
            torch.testing.assert_close(with_sem["bbox_feats"] - plain, F.adaptive_avg_pool2d(pooled, 7))
            assert not torch.equal(with_sem["cls_score"], without["cls_score"])
        mask_with = head.mask_features(2, FEATS, ROIS, semantic_feat)
        torch.testing.assert_close(mask_with - head.mask_roi_extractor[2](FEATS, ROIS), pooled)


def test_semantic_fusion_only_where_asked():
    table = _table()
    table["semantic_fusion"] = ["mask"]
    torch.manual_seed(0)
    head = detcore.build("roi_head", table)
    with torch.no_grad():
        semantic_feat = head.semantic_head(FEATS)[1]
        box = head.bbox_forward(0, FEATS, ROIS, semantic_feat=semantic_feat)["bbox_feats"]
        torch.testing.assert_close(box, head.bbox_roi_extractor[0](FEATS, ROIS))
        mask = head.mask_features(0, FEATS, ROIS, semantic_feat)
        assert not torch.allclose(mask, head.mask_roi_extractor[0](FEATS, ROIS))


def _gt() -> Instances:
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 6:28] = 1
    masks[1, 12:48, 22:58] = 1
    return Instances(bboxes=torch.tensor([[6.0, 8.0, 28.0, 40.0], [22.0, 12.0, 58.0, 48.0]]),
                     labels=torch.tensor([0, 2]), masks=BitmapMasks(masks.numpy(), 64, 64))  # fmt: skip


@pytest.mark.parametrize("interleaved", [True, False])
def test_interleaved_mask_branch_trains_on_the_refined_boxes_resampled_by_the_same_stage(interleaved):
    head = make_head(interleaved=interleaved).train()
    calls: list[int] = []
    refined: list[list[torch.Tensor]] = []
    sample, refine = head.sample, head.refine

    def spy_sample(stage, *a, **k):
        calls.append(stage)
        return sample(stage, *a, **k)

    def spy_refine(*a, **k):
        out = refine(*a, **k)
        refined.append(out)
        return out

    head.sample, head.refine = spy_sample, spy_refine
    props = [torch.tensor([[5.0, 7.0, 29.0, 41.0], [20.0, 10.0, 60.0, 50.0], [0.0, 0.0, 40.0, 40.0]])]
    seg = torch.randint(0, 4, (1, 1, 8, 8))
    losses = head.loss(FEATS, props, [_gt()], [META], gt_semantic_seg=seg)
    if interleaved:
        # per stage: sample the proposals, refine, re-sample the refined boxes (same stage)
        assert calls == [0, 0, 1, 1, 2, 2] and len(refined) == 3
    else:
        assert calls == [0, 1, 2] and len(refined) == 2
    assert set(losses) == {"loss_semantic_seg"} | {
        f"s{i}.{n}" for i in range(3) for n in ("loss_cls", "acc", "loss_bbox", "loss_mask")
    }


def test_interleaved_resampling_uses_the_refined_boxes():
    head = make_head().train()
    seen = []
    sample = head.sample

    def spy(stage, proposals, *a, **k):
        seen.append((stage, [p.clone() for p in proposals]))
        return sample(stage, proposals, *a, **k)

    head.sample = spy
    props = [torch.tensor([[5.0, 7.0, 29.0, 41.0], [20.0, 10.0, 60.0, 50.0]])]
    head.loss(FEATS, props, [_gt()], [META], gt_semantic_seg=torch.zeros(1, 1, 8, 8, dtype=torch.long))
    # the re-sampling of stage i gets the same boxes as stage i + 1's sampling: the refined ones
    assert torch.equal(seen[1][1][0], seen[2][1][0]) and torch.equal(seen[3][1][0], seen[4][1][0])
    assert not torch.equal(seen[0][1][0], seen[1][1][0])


def test_test_time_single_pass_equals_the_per_stage_path():
    head = make_head().eval()
    with torch.no_grad():
        semantic_feat = head.semantic_head(FEATS)[1]
        probs = head.predict_mask_probs(FEATS, ROIS, semantic_feat=semantic_feat)
        per_stage = torch.stack([t.sigmoid() for t in _stage_logits(head, semantic_feat)]).mean(0)
        torch.testing.assert_close(probs, per_stage)
        results = head.predict(
            FEATS, [torch.tensor([[5.0, 7.0, 29.0, 41.0], [20.0, 10.0, 60.0, 50.0]])], [META]
        )
    (res,) = results
    assert res.masks.dtype == torch.bool and res.masks.shape[1:] == (64, 64)
    assert len(res.bboxes) == len(res.scores) == len(res.labels) == len(res.masks)


def test_configuration_errors_are_named():
    table = _table()
    del table["semantic_roi_extractor"]
    with pytest.raises(ValueError, match="semantic_head and semantic_roi_extractor go together"):
        detcore.build("roi_head", table)
    table = _table()
    table["semantic_fusion"] = ["bbox", "masks"]
    with pytest.raises(ValueError, match="semantic_fusion"):
        detcore.build("roi_head", table)
    table = _table()
    table["mask_head"][1]["with_conv_res"] = False
    with pytest.raises(ValueError, match="mask_head.1"):
        detcore.build("roi_head", table)
    head = make_head().train()
    with pytest.raises(ValueError, match="gt_semantic_seg"):
        head.loss(FEATS, [ROIS[:, 1:]], [_gt()], [META])
    assert head.loss_inputs == ("gt_semantic_seg",) and make_head(semantic=False).loss_inputs == ()
