"""Components accept built objects as well as config tables: a RetinaNet composed in Python (as in
torchvision / Detectron2) equals the same model built from its config, and behaviour that depends on
a child (sigmoid scores, sampling) is read from the built child, not from a class name."""

from __future__ import annotations

import pytest
import torch

import detcore
from detcore.errors import ConfigError
from detcore.models.dense_heads import AnchorHead
from detcore.models.losses import CrossEntropyLoss, FocalLoss, L1Loss, SmoothL1Loss
from detcore.models.task_utils import (
    AnchorGenerator,
    DeltaXYWHBBoxCoder,
    MaxIoUAssigner,
    PseudoSampler,
    RandomSampler,
)
from detcore.testing import two_image_batch

pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")
pytest.importorskip("det_plugin_resnet", reason="det-plugin-resnet is not installed")
pytest.importorskip("det_plugin_fpn", reason="det-plugin-fpn is not installed")

from det_plugin_fpn import FPN  # noqa: E402
from det_plugin_resnet import ResNet  # noqa: E402
from det_plugin_retinanet import RetinaHead, RetinaNet  # noqa: E402

NORM = {"type": "GN", "num_groups": 4}
ANCHORS = dict(octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])
ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=-1)
TRAIN_CFG = dict(allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=100, min_bbox_size=0, score_thr=0.005,  # below the 0.01 prior: detections
                nms={"type": "nms", "iou_threshold": 0.5},
                max_per_img=20)

#: the model as a config table ...
TABLE = {
    "type": "RetinaNet",
    "backbone": {"type": "ResNet", "depth": 18, "base_channels": 8, "out_indices": [1, 2, 3],
                 "frozen_stages": -1, "norm_cfg": NORM, "norm_eval": False},
    "neck": {"type": "FPN", "in_channels": [16, 32, 64], "out_channels": 16, "start_level": 0,
             "add_extra_convs": "on_input", "num_outs": 5},
    "bbox_head": {
        "type": "RetinaHead", "num_classes": 3, "in_channels": 16, "feat_channels": 16, "stacked_convs": 1,
        "anchor_generator": {"type": "AnchorGenerator", **ANCHORS},
        "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": [1.0] * 4},
        "loss_cls": {"type": "FocalLoss", "use_sigmoid": True, "gamma": 2.0, "alpha": 0.25},
        "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0},
    },
    "train_cfg": {**TRAIN_CFG, "assigner": {"type": "MaxIoUAssigner", **ASSIGNER}},
    "test_cfg": TEST_CFG,
}


def composed() -> RetinaNet:
    """... and the same model composed from built objects, no table anywhere."""
    head = RetinaHead(
        num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1,
        anchor_generator=AnchorGenerator(**ANCHORS),
        bbox_coder=DeltaXYWHBBoxCoder(target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25),
        loss_bbox=L1Loss(loss_weight=1.0),
        train_cfg={**TRAIN_CFG, "assigner": MaxIoUAssigner(**ASSIGNER)},
        test_cfg=TEST_CFG,
    )
    return RetinaNet(
        backbone=ResNet(depth=18, base_channels=8, out_indices=(1, 2, 3), frozen_stages=-1, norm_cfg=NORM,
                        norm_eval=False),
        neck=FPN(in_channels=[16, 32, 64], out_channels=16, start_level=0, add_extra_convs="on_input",
                 num_outs=5),
        bbox_head=head,
    )


def test_retinanet_composed_from_built_objects_equals_the_config_built_one():
    torch.manual_seed(0)
    from_config = detcore.build("detector", TABLE, where="model")
    from_config.init_weights()
    from_python = composed()
    assert type(from_python.bbox_head.loss_cls) is type(from_config.bbox_head.loss_cls)
    state = from_config.state_dict()
    assert list(from_python.state_dict()) == list(state)
    from_python.load_state_dict(state)

    batch = two_image_batch()
    from_config.train()
    from_python.train()
    losses_c, losses_p = from_config(**batch), from_python(**batch)
    assert set(losses_c) == set(losses_p) == {"loss_cls", "loss_bbox"}
    for key in losses_c:
        for a, b in zip(losses_c[key], losses_p[key]):
            assert torch.equal(a, b), key
    total = sum(sum(v) for v in losses_c.values())
    assert torch.isfinite(total) and total > 0

    from_config.eval()
    from_python.eval()
    with torch.no_grad():
        dets_c, dets_p = from_config(**batch), from_python(**batch)
    assert len(dets_c) == len(dets_p) == 2
    for a, b in zip(dets_c, dets_p):
        assert torch.equal(a.bboxes, b.bboxes) and torch.equal(a.scores, b.scores)
        assert torch.equal(a.labels, b.labels)
    assert sum(len(d.bboxes) for d in dets_c) > 0  # the comparison saw detections


def test_built_head_keeps_its_settings_and_conflicting_detector_settings_are_refused():
    model = composed()
    assert model.test_cfg == TEST_CFG and model.train_cfg["allowed_border"] == -1
    head = model.bbox_head
    with pytest.raises(ValueError, match="bbox_head is a built RetinaHead with its own test_cfg"):
        RetinaNet(backbone=model.backbone, neck=model.neck, bbox_head=head,
                  test_cfg={**TEST_CFG, "nms_pre": 5})
    # a built object of another kind where a backbone belongs
    with pytest.raises(ConfigError, match="model.backbone: a backbone is expected, got a built dense_head"):
        RetinaNet(backbone=head, neck=model.neck, bbox_head=head)
    # settings of a head composed in Python are checked where they are given
    with pytest.raises(ConfigError, match="RetinaHead.test_cfg.score_treshold: unknown key 'score_treshold'"):
        RetinaHead(num_classes=3, in_channels=16, test_cfg={**TEST_CFG, "score_treshold": 0.3})


def _head(loss_cls, sampler) -> AnchorHead:
    anchors = AnchorGenerator(scales=[8], ratios=[1.0], strides=[8])
    train_cfg = {"assigner": MaxIoUAssigner(**ASSIGNER), "sampler": sampler}
    return AnchorHead(2, 4, anchor_generator=anchors, loss_cls=loss_cls, loss_bbox=SmoothL1Loss(),
                      train_cfg=train_cfg)


def test_sampling_and_sigmoid_follow_the_built_loss_and_sampler():
    sampler = RandomSampler(num=16, pos_fraction=0.5)
    # cross entropy does not balance classes: the configured sampler is used
    head = _head(CrossEntropyLoss(use_sigmoid=True), sampler)
    assert head.sampling and head.sampler is sampler and head.use_sigmoid_cls and head.cls_out_channels == 2
    # a softmax loss object gives num_classes + 1 outputs
    assert _head(CrossEntropyLoss(use_sigmoid=False), sampler).cls_out_channels == 3
    # focal loss declares handles_imbalance: the sampler is ignored for a pseudo sampler
    head = _head(FocalLoss(), sampler)
    assert FocalLoss.handles_imbalance and not head.sampling and isinstance(head.sampler, PseudoSampler)
    # a pseudo sampler given explicitly (as an object or a table) means no sampling
    assert not _head(CrossEntropyLoss(use_sigmoid=True), PseudoSampler()).sampling
    assert not _head(CrossEntropyLoss(use_sigmoid=True), {"type": "PseudoSampler"}).sampling
    assert _head(CrossEntropyLoss(use_sigmoid=True), {"type": "RandomSampler", "num": 8,
                                                      "pos_fraction": 0.25}).sampling
