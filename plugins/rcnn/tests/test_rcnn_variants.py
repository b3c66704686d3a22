"""The two-stage variants, which are configs rather than code: each builds what its name says (caffe
R-50, R-101, ResNeXt, GN+WS, DCN, 2x / multi-scale schedules, OHEM, Soft-NMS, C4, DC5), OHEM keeps the
RoIs with the highest classification loss, Soft-NMS decays the final detections as a slow per-class
reference does, the C4 detector trains and predicts, and the README states the parameter counts the configs
build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import detcore
from detcore.config import Config
from detcore.models.layers import ConvWS2d
from detcore.models.task_utils import OHEMSampler
from detcore.models.utils import bbox2roi
from detcore.structures import Instances
from detcore.testing import load_validated_config

pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs"
CAFFE_MEAN = [103.53, 116.28, 123.675]


def load(rel: str) -> Config:
    return load_validated_config(CONFIGS / rel)


def meta_model(cfg: Config) -> torch.nn.Module:
    with torch.device("meta"):
        return detcore.build("detector", cfg.to_dict()["model"])


def normalize_steps(cfg: Config) -> list[dict]:
    """The Normalize tables of the train, val and test pipelines (inside MultiScaleFlipAug too)."""
    found = []
    for split in ("train", "val", "test"):
        table = cfg["data"][split]
        for step in table.get("pipeline", table.get("dataset", {}).get("pipeline", [])):
            for inner in [step, *step.get("transforms", [])]:
                if inner["type"] == "Normalize":
                    found.append(inner)
    return found


# -- what each variant config builds ---------------------------------------------------------------


def test_caffe_r50_fpn():
    cfg = load("faster_rcnn/faster_rcnn_r50_caffe_fpn_1x_coco.toml")
    model = meta_model(cfg)
    block = model.backbone.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)  # caffe: stride on the 1x1
    assert not any(p.requires_grad for n, p in model.backbone.named_parameters() if ".bn" in n or "bn1" in n)
    steps = normalize_steps(cfg)
    assert len(steps) == 3 and all(s["mean"] == CAFFE_MEAN and s["std"] == [1.0] * 3 for s in steps)
    assert not any(s["to_rgb"] for s in steps)
    assert cfg["model"]["backbone"]["init_cfg"]["checkpoint"].endswith("resnet50_msra-5891d200.pth")


@pytest.mark.parametrize(
    ("rel", "groups", "width", "blocks"),
    [
        ("faster_rcnn/faster_rcnn_r101_fpn_1x_coco.toml", 1, 64, 23),
        ("faster_rcnn/faster_rcnn_x101_32x4d_fpn_1x_coco.toml", 32, 128, 23),
        ("faster_rcnn/faster_rcnn_x101_64x4d_fpn_1x_coco.toml", 64, 256, 23),
        ("mask_rcnn/mask_rcnn_r101_fpn_1x_coco.toml", 1, 64, 23),
        ("mask_rcnn/mask_rcnn_x101_32x4d_fpn_1x_coco.toml", 32, 128, 23),
    ],
)
def test_deeper_backbones(rel, groups, width, blocks):
    model = meta_model(load(rel))
    assert len(model.backbone.layer3) == blocks
    conv2 = model.backbone.layer1[0].conv2
    assert conv2.groups == groups and conv2.out_channels == width


@pytest.mark.parametrize(
    ("rel", "steps", "epochs"),
    [
        ("faster_rcnn/faster_rcnn_r50_fpn_2x_coco.toml", [16, 22], 24),
        ("mask_rcnn/mask_rcnn_r50_fpn_2x_coco.toml", [16, 22], 24),
        ("gn/mask_rcnn_r50_fpn_gn-all_2x_coco.toml", [16, 22], 24),
        ("faster_rcnn/faster_rcnn_r50_fpn_mstrain_3x_coco.toml", [9, 11], 12),
    ],
)
def test_schedules(rel, steps, epochs):
    cfg = load(rel)
    assert cfg["lr_config"]["step"] == steps and cfg["runner"]["max_epochs"] == epochs
    assert cfg["optimizer"]["lr"] == 0.02


def test_multiscale_training_repeats_coco_three_times():
    cfg = load("faster_rcnn/faster_rcnn_r50_fpn_mstrain_3x_coco.toml")
    train = cfg["data"]["train"]
    assert train["type"] == "RepeatDataset" and train["times"] == 3
    resize = next(s for s in train["dataset"]["pipeline"] if s["type"] == "Resize")
    assert resize["img_scale"] == [[1333, 640], [1333, 800]] and resize["multiscale_mode"] == "range"
    from detcore.data.transforms.geometric import Resize

    sizes = set()
    torch.manual_seed(0)
    import numpy as np

    np.random.seed(0)
    transform = Resize(**{k: v for k, v in resize.items() if k != "type"})
    for _ in range(20):
        out = transform({"img": np.zeros((480, 640, 3), np.uint8), "img_fields": ["img"]})
        sizes.add(out["img"].shape[0])
    assert len(sizes) > 5 and 640 <= min(sizes) and max(sizes) <= 800  # short edge drawn in [640, 800]
    assert meta_model(cfg).roi_head.bbox_head.num_classes == 80


def test_gn_ws_everywhere():
    model = meta_model(load("gn+ws/faster_rcnn_r50_fpn_gn-ws-all_1x_coco.toml"))
    for part in (model.backbone, model.neck, model.roi_head.bbox_head):
        convs = [m for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(isinstance(m, ConvWS2d) for m in convs), type(part).__name__
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in part.modules())
        assert all(m.num_groups == 32 for m in part.modules() if isinstance(m, torch.nn.GroupNorm))
    assert len(model.roi_head.bbox_head.shared_convs) == 4 and len(model.roi_head.bbox_head.shared_fcs) == 1


def test_gn_all_mask_rcnn():
    cfg = load("gn/mask_rcnn_r50_fpn_gn-all_2x_coco.toml")
    model = meta_model(cfg)
    for part in (model.backbone, model.neck, model.roi_head.bbox_head, model.roi_head.mask_head):
        assert any(isinstance(m, torch.nn.GroupNorm) for m in part.modules()), type(part).__name__
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in part.modules())
    steps = normalize_steps(cfg)
    assert len(steps) == 3 and all(s["mean"] == [102.9801, 115.9465, 122.7717] for s in steps)
    load_step = next(s for s in cfg["data"]["train"]["pipeline"] if s["type"] == "LoadAnnotations")
    assert load_step["with_mask"]


@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("dcn/faster_rcnn_r50_fpn_dconv_c3-c5_1x_coco.toml", "DeformConv2dPack"),
        ("dcn/mask_rcnn_r50_fpn_mdconv_c3-c5_1x_coco.toml", "ModulatedDeformConv2dPack"),
    ],
)
def test_deformable_stages_c3_to_c5(rel, kind):
    backbone = meta_model(load(rel)).backbone
    assert all(type(b.conv2).__name__ == "Conv2d" for b in backbone.layer1)
    for name in ("layer2", "layer3", "layer4"):
        assert all(type(b.conv2).__name__ == kind for b in getattr(backbone, name)), name


def test_c4_and_dc5_feature_paths():
    c4 = meta_model(load("faster_rcnn/faster_rcnn_r50_caffe_c4_1x_coco.toml"))
    assert not hasattr(c4.backbone, "layer4") and c4.backbone.out_indices == (2,)
    assert type(c4.roi_head.shared_head).__name__ == "ResLayer" and c4.roi_head.bbox_head.with_avg_pool
    assert c4.roi_head.bbox_roi_extractor.featmap_strides == [16]
    assert c4.rpn_head.prior_generator.strides == [(16, 16)]
    dc5 = meta_model(load("faster_rcnn/faster_rcnn_r50_caffe_dc5_1x_coco.toml"))
    assert dc5.backbone.out_indices == (3,) and not dc5.roi_head.with_shared_head
    for rel, cfg_model in (("c4", c4), ("dc5", dc5)):
        assert cfg_model.train_cfg["rpn_proposal"]["nms_pre"] == 12000, rel
        assert (
            cfg_model.test_cfg["rpn"]["nms_pre"] == 6000 and cfg_model.test_cfg["rpn"]["max_per_img"] == 1000
        )


# -- OHEM ------------------------------------------------------------------------------------------


def shapes_model(**rcnn_train) -> torch.nn.Module:
    cfg = load("faster_rcnn/faster_rcnn_shapes.toml").to_dict()["model"]
    cfg["train_cfg"]["rcnn"]["sampler"].update(rcnn_train)
    torch.manual_seed(0)
    model = detcore.build("detector", cfg)
    model.init_weights()
    return model


def test_ohem_keeps_the_rois_with_the_highest_classification_loss():
    model = shapes_model(type="OHEMSampler", num=16, pos_fraction=0.25)
    head = model.roi_head
    assert isinstance(head.bbox_sampler, OHEMSampler)
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 32, 64 // s, 64 // s, generator=gen) for s in (4, 8, 16, 32, 64)]
    gt = Instances(bboxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([2]))
    # 10 proposals around the gt (positives), 40 far away (negatives)
    near = torch.tensor([[8.0, 8.0, 40.0, 40.0]]) + torch.randn(10, 4, generator=gen)
    xy = 44 + torch.rand(40, 2, generator=gen) * 10
    far = torch.cat([xy, xy + 6 + torch.rand(40, 2, generator=gen) * 4], 1)
    proposals = torch.cat([near, far])
    (result,) = head.sample(feats, [proposals], [gt])
    # independent expectation: softmax cross-entropy of every candidate (gt prepended), top-k per side
    candidates = torch.cat([gt.bboxes, proposals])
    with torch.no_grad():
        cls_score = head._bbox_forward(feats, bbox2roi([candidates]))["cls_score"]
    is_pos = torch.zeros(len(candidates), dtype=torch.bool)
    is_pos[: 1 + 10] = True  # the gt and its 10 jittered copies (IoU > 0.5)
    labels = torch.where(is_pos, torch.tensor(2), torch.tensor(head.bbox_head.num_classes))
    loss = F.cross_entropy(cls_score, labels, reduction="none")
    pos_idx, neg_idx = torch.nonzero(is_pos).view(-1), torch.nonzero(~is_pos).view(-1)
    want_pos = pos_idx[loss[pos_idx].topk(4).indices]
    want_neg = neg_idx[loss[neg_idx].topk(12).indices]
    assert sorted(result.pos_inds.tolist()) == sorted(want_pos.tolist())
    assert sorted(result.neg_inds.tolist()) == sorted(want_neg.tolist())
    # a random sample of 12 of the 39 negatives would almost never be exactly the 12 hardest
    assert loss[result.neg_inds].min() >= loss[neg_idx].sort(descending=True).values[11]


def test_ohem_training_step():
    from detcore.testing import two_image_batch

    model = shapes_model(type="OHEMSampler").train()
    batch = two_image_batch()
    batch["gt_instances"][0].labels = torch.tensor([0, 2])
    losses = model(**batch)
    assert {"loss_cls", "loss_bbox", "loss_rpn_cls", "loss_rpn_bbox"} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.roi_head.bbox_head.fc_cls.weight.grad.abs().sum() > 0


# -- Soft-NMS --------------------------------------------------------------------------------------


def slow_soft_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float, min_score: float) -> list:
    """Linear Soft-NMS, one box at a time in Python: [(box, decayed score)] in selection order."""
    boxes, scores = boxes.tolist(), scores.tolist()
    alive = list(range(len(boxes)))
    kept = []
    while alive:
        best = max(alive, key=lambda i: (scores[i], -i))
        alive.remove(best)
        kept.append((boxes[best], scores[best]))
        bx1, by1, bx2, by2 = boxes[best]
        for i in list(alive):
            x1, y1, x2, y2 = boxes[i]
            iw, ih = max(0.0, min(bx2, x2) - max(bx1, x1)), max(0.0, min(by2, y2) - max(by1, y1))
            inter = iw * ih
            iou = inter / ((bx2 - bx1) * (by2 - by1) + (x2 - x1) * (y2 - y1) - inter)
            if iou > iou_thr:
                scores[i] *= 1.0 - iou
            if scores[i] < min_score:
                alive.remove(i)
    return kept


def test_soft_nms_config_decays_detections_like_a_slow_reference():
    cfg = load("faster_rcnn/faster_rcnn_r50_fpn_soft_nms_1x_coco.toml")
    rcnn_test = cfg["model"]["test_cfg"]["rcnn"]
    assert rcnn_test["nms"] == {"type": "soft_nms", "iou_threshold": 0.5}
    model = shapes_model().eval()
    model.roi_head.test_cfg = dict(rcnn_test, score_thr=0.2)
    head = model.roi_head
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(1, 32, 64 // s, 64 // s, generator=gen) for s in (4, 8, 16, 32, 64)]
    xy = torch.rand(60, 2, generator=gen) * 30
    proposals = torch.cat([xy, xy + 8 + torch.rand(60, 2, generator=gen) * 20], 1)
    with torch.no_grad():
        # boost the classifier so that many overlapping boxes pass score_thr
        head.bbox_head.fc_cls.bias.copy_(torch.tensor([1.0, 0.5, 0.0, -3.0]))
        meta = {"img_shape": (64, 64, 3), "scale_factor": [1.0] * 4}
        (got,) = head.predict(feats, [proposals], [meta])
        rois = bbox2roi([proposals])
        out = head._bbox_forward(feats, rois)
        (raw,) = head.bbox_head.predict_by_feat([rois], [out["cls_score"]], [out["bbox_pred"]], [meta], None)
    want = []
    boxes = raw.bboxes.view(len(proposals), -1, 4)
    for c in range(head.bbox_head.num_classes):
        keep = raw.scores[:, c] > 0.2
        for box, score in slow_soft_nms(boxes[keep, c], raw.scores[keep, c], 0.5, 1e-3):
            want.append((score, c, box))
    want.sort(key=lambda t: -t[0])
    want = want[:100]
    assert len(got) == len(want) and len(want) > 20
    torch.testing.assert_close(got.scores, torch.tensor([w[0] for w in want]), rtol=1e-5, atol=1e-6)
    assert got.labels.tolist() == [w[1] for w in want]
    torch.testing.assert_close(got.bboxes, torch.tensor([w[2] for w in want]))
    assert (got.scores < raw.scores.max()).sum() > 0  # some scores were decayed, not just kept


# -- C4 end to end ---------------------------------------------------------------------------------


def _tiny_single_level(rel: str) -> torch.nn.Module:
    """The C4 / DC5 config with 3 classes, few proposals and RoIs, no pretrained files."""
    cfg = load(rel).to_dict()["model"]
    cfg["backbone"].pop("init_cfg")
    if "shared_head" in cfg["roi_head"]:
        cfg["roi_head"]["shared_head"].pop("init_cfg")
    cfg["roi_head"]["bbox_head"]["num_classes"] = 3
    cfg["train_cfg"]["rpn_proposal"].update(nms_pre=200, max_per_img=30)
    cfg["train_cfg"]["rcnn"]["sampler"]["num"] = 8
    cfg["test_cfg"]["rpn"].update(nms_pre=100, max_per_img=10)
    cfg["test_cfg"]["rcnn"]["score_thr"] = 0.0  # keep every detection of the untrained model
    if rel.endswith("dc5_1x_coco.toml"):  # the 2048-wide RPN conv and 100M-parameter fc6 made small
        cfg["rpn_head"]["feat_channels"] = 64
        cfg["roi_head"]["bbox_head"]["fc_out_channels"] = 64
    torch.manual_seed(0)
    model = detcore.build("detector", cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize(
    "rel",
    [
        "faster_rcnn/faster_rcnn_r50_caffe_c4_1x_coco.toml",
        "faster_rcnn/faster_rcnn_r50_caffe_dc5_1x_coco.toml",
    ],
)
def test_single_level_detectors_train_and_predict(rel):
    model = _tiny_single_level(rel).train()
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randn(1, 3, 64, 64, generator=gen)
    (feat,) = model.backbone(imgs)
    assert feat.shape[-2:] == (4, 4)  # stride 16: res4 (C4) or the dilated res5 (DC5)
    metas = [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), ori_shape=(32, 32, 3),
                  scale_factor=[2.0] * 4, batch_input_shape=(64, 64), flip=False)]  # fmt: skip
    gts = [Instances(bboxes=torch.tensor([[10.0, 12.0, 50.0, 44.0]]), labels=torch.tensor([1]))]
    losses = model(imgs, metas, gts, [Instances(bboxes=torch.zeros(0, 4))])
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox"} <= set(losses)
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    if model.roi_head.with_shared_head:  # C4: the shared res5 head learns (convs; its norms are frozen)
        assert model.roi_head.shared_head.layer4[2].conv3.weight.grad.abs().sum() > 0
    else:  # DC5: the dilated res5 of the backbone learns (its projection shortcut: with random init the
        # residual branches are muted by zero-initialised, frozen last norms)
        assert model.backbone.layer4[0].downsample[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (res,) = model(imgs, metas)
    assert 0 < len(res.bboxes) == len(res.scores) == len(res.labels) <= 100 and res.bboxes.shape[1] == 4
    assert res.bboxes.min() >= 0 and res.bboxes.max() <= 32 + 1e-4  # the original image is 32x32
    assert res.labels.max() < 3 and bool((res.scores[:-1] >= res.scores[1:]).all())


# -- the README's figures --------------------------------------------------------------------------


def test_readme_variant_table_states_the_built_parameter_counts():
    import re

    text = (ROOT / "plugins" / "rcnn" / "README.md").read_text()
    section = text.split("## Variants", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w+\-/.]+)` \|.*\| ([\d,]+)[^|]*\|$", section, flags=re.M)
    assert len(rows) == 17
    for rel, stated in rows:
        count = sum(p.numel() for p in meta_model(load(f"{rel}.toml")).parameters())
        assert f"{count:,}" == stated, rel
