"""The GA variant configs (R-50 pytorch-style, R-101 caffe-style, X-101-32x4d/64x4d, the multi-scale 2x
GA-RetinaNet): each is its R-50 GA config with another backbone, so its state dict must be the plain
R-101 / X-101 detector's backbone entries followed by the R-50 GA model's neck and head entries, and
its parameter count the R-50 GA count plus the backbone difference between the plain configs (which
the reference's own key files confirm where they exist). All on the meta device."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

import detcore
from detcore.testing import load_validated_config, reference_keys_or_skip
from detcore.testing.reference import state_dict_layout

pytest.importorskip("det_plugin_guided_anchoring", reason="det-plugin-guided-anchoring is not installed")
pytest.importorskip("det_plugin_rcnn", reason="det-plugin-rcnn is not installed")
pytest.importorskip("det_plugin_retinanet", reason="det-plugin-retinanet is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[3] / "configs"
GA = ROOT / "guided_anchoring"
FAMILIES = ["retinanet", "rpn", "faster"]

# backbone -> (plain config with that backbone, plain R-50 config of the same detector); the
# difference of their parameter counts is the backbone difference
PLAIN = {
    "r101": ("retinanet/retinanet_r101_fpn_1x_coco", "retinanet/retinanet_r50_fpn_1x_coco"),
    "x101_32x4d": (
        "faster_rcnn/faster_rcnn_x101_32x4d_fpn_1x_coco", "faster_rcnn/faster_rcnn_r50_fpn_1x_coco"),
    "x101_64x4d": ("retinanet/retinanet_x101_64x4d_fpn_1x_coco", "retinanet/retinanet_r50_fpn_1x_coco"),
}
# variant -> (its R-50 GA base, backbone)
VARIANTS = {}
for _fam in FAMILIES:
    VARIANTS[f"ga_{_fam}_r101_caffe_fpn_1x_coco"] = (f"ga_{_fam}_r50_caffe_fpn_1x_coco", "r101")
    VARIANTS[f"ga_{_fam}_x101_32x4d_fpn_1x_coco"] = (f"ga_{_fam}_r50_fpn_1x_coco", "x101_32x4d")
    VARIANTS[f"ga_{_fam}_x101_64x4d_fpn_1x_coco"] = (f"ga_{_fam}_r50_fpn_1x_coco", "x101_64x4d")
VARIANTS["ga_retinanet_r101_caffe_fpn_mstrain_2x"] = ("ga_retinanet_r50_caffe_fpn_1x_coco", "r101")


def config(path: Path) -> dict:
    return load_validated_config(path).to_dict()


@functools.cache
def meta_model(path: Path) -> torch.nn.Module:
    """The detector of a config on the meta device (cached: the tests only read layouts and counts)."""
    with torch.device("meta"):
        return detcore.build("detector", config(path)["model"])


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def split_layout(model: torch.nn.Module) -> tuple[list, list]:
    layout = state_dict_layout(model)
    backbone = [e for e in layout if e[0].startswith("backbone.")]
    assert layout[: len(backbone)] == backbone, "backbone entries do not come first"
    return backbone, layout[len(backbone):]


def flat_transforms(pipeline: list[dict]) -> list[dict]:
    """The transforms of a pipeline, those inside MultiScaleFlipAug included."""
    return [u for t in pipeline for u in ([t] + flat_transforms(t.get("transforms", [])))]


def without(pipeline: list[dict], transform: dict) -> list:
    """The pipeline with ``transform`` taken out (also inside MultiScaleFlipAug)."""
    return [{**t, "transforms": without(t["transforms"], transform)} if "transforms" in t else t
            for t in pipeline if t != transform]


@pytest.mark.parametrize("family", FAMILIES)
def test_pytorch_style_r50_differs_from_the_caffe_one_only_in_backbone_style_and_normalisation(family):
    caffe = config(GA / f"ga_{family}_r50_caffe_fpn_1x_coco.toml")
    torch_style = config(GA / f"ga_{family}_r50_fpn_1x_coco.toml")
    cm, tm = caffe.pop("model"), torch_style.pop("model")
    cb, tb = cm.pop("backbone"), tm.pop("backbone")
    assert cm == tm, "the GA necks, heads and train/test settings differ"
    assert (cb["style"], tb["style"]) == ("caffe", "pytorch")
    assert cb["norm_cfg"]["requires_grad"] is False and tb["norm_cfg"]["requires_grad"] is True
    assert {k: v for k, v in cb.items() if k not in ("style", "norm_cfg", "init_cfg")} == {
        k: v for k, v in tb.items() if k not in ("style", "norm_cfg", "init_cfg")}
    assert tb["init_cfg"]["checkpoint"] == "torchvision://resnet50"
    caffe_norm = {"type": "Normalize", "mean": [103.53, 116.28, 123.675], "std": [1.0, 1.0, 1.0],
                  "to_rgb": False}
    torch_norm = {"type": "Normalize", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                  "to_rgb": True}
    for split in ("train", "val", "test"):
        caffe_pipe, torch_pipe = caffe["data"][split]["pipeline"], torch_style["data"][split]["pipeline"]
        assert caffe_norm in flat_transforms(caffe_pipe) and torch_norm in flat_transforms(torch_pipe), split
        assert without(caffe_pipe, caffe_norm) == without(torch_pipe, torch_norm), split
    for key in ("evaluator", "optimizer", "optimizer_config", "lr_config", "runner"):
        assert caffe.get(key) == torch_style.get(key), key


@pytest.mark.parametrize("family", FAMILIES)
def test_pytorch_style_r50_has_the_reference_r50_layout(family):
    keys = reference_keys_or_skip(f"ga_{family}_r50_caffe_fpn_1x_coco")
    model = meta_model(GA / f"ga_{family}_r50_fpn_1x_coco.toml")
    assert state_dict_layout(model) == keys.entries
    assert count(model) == keys.param_count


def bottleneck_backbone_params(blocks: list[int], groups: int = 1, base_width: int = 64) -> int:
    """Parameters of a 4-stage ResNet / ResNeXt bottleneck backbone, counted by hand: the 7x7 stem, then
    per block 1x1 (in -> width), grouped 3x3 (width -> width), 1x1 (width -> 4 planes), a batch norm
    (weight and bias) after each, and a 1x1 projection with its norm on each stage's first block;
    ResNeXt's width is floor(planes * base_width / 64) * groups."""
    total = 3 * 64 * 7 * 7 + 2 * 64
    cin = 64
    for stage, num in enumerate(blocks):
        planes = 64 * 2**stage
        out = 4 * planes
        width = planes if groups == 1 else planes * base_width // 64 * groups
        for block in range(num):
            total += cin * width + width * (width // groups) * 9 + width * out + 2 * (2 * width + out)
            if block == 0:
                total += cin * out + 2 * out
            cin = out
    return total


BY_HAND = {
    "r101": bottleneck_backbone_params([3, 4, 23, 3]),
    "x101_32x4d": bottleneck_backbone_params([3, 4, 23, 3], 32, 4),
    "x101_64x4d": bottleneck_backbone_params([3, 4, 23, 3], 64, 4),
}


def test_hand_count_of_resnet50_is_the_known_figure():
    # torchvision's ResNet-50 has 25,557,032 parameters, 2,049,000 of them in its 1000-way fc layer
    assert bottleneck_backbone_params([3, 4, 6, 3]) == 25_557_032 - 2_049_000


@pytest.mark.parametrize("backbone", sorted(PLAIN))
def test_plain_backbone_differences_match_the_hand_count_and_the_reference_key_files(backbone):
    """The backbone difference the variants' expectation uses (plain configs built here) equals the hand
    count, and the reference's key files where they exist (R-101: 18,992,128; X-101-64x4d: 57,898,240)."""
    plain, r50 = PLAIN[backbone]
    derived = count(meta_model(ROOT / f"{plain}.toml")) - count(meta_model(ROOT / f"{r50}.toml"))
    expected = BY_HAND[backbone] - bottleneck_backbone_params([3, 4, 6, 3])
    assert derived == expected
    if backbone != "x101_32x4d":  # no key file for a plain X-101-32x4d detector
        ref_plain, ref_r50 = reference_keys_or_skip(Path(plain).name), reference_keys_or_skip(Path(r50).name)
        assert ref_plain.param_count - ref_r50.param_count == expected


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_is_the_r50_ga_model_with_the_plain_backbone(name):
    base_name, backbone = VARIANTS[name]
    plain, r50 = PLAIN[backbone]
    variant = meta_model(GA / f"{name}.toml")
    base = meta_model(GA / f"{base_name}.toml")
    plain_model = meta_model(ROOT / f"{plain}.toml")
    v_backbone, v_rest = split_layout(variant)
    assert v_backbone == split_layout(plain_model)[0]
    assert v_rest == split_layout(base)[1]
    assert count(variant) == count(base) + count(plain_model) - count(meta_model(ROOT / f"{r50}.toml"))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_changes_only_the_backbone(name):
    base_name, backbone = VARIANTS[name]
    table = config(GA / f"{name}.toml")["model"]
    base = config(GA / f"{base_name}.toml")["model"]
    b, bb = table.pop("backbone"), base.pop("backbone")
    assert table == base
    assert b["depth"] == 101 and b["frozen_stages"] == 1 and b["out_indices"] == [0, 1, 2, 3]
    if backbone == "r101":
        assert b["type"] == "ResNet" and b["style"] == "caffe" and b["norm_cfg"]["requires_grad"] is False
        assert b["norm_eval"] is True and "resnet101_msra" in b["init_cfg"]["checkpoint"]
        assert {k: v for k, v in b.items() if k not in ("depth", "init_cfg")} == {
            k: v for k, v in bb.items() if k not in ("depth", "init_cfg")}
    else:
        groups = int(backbone.split("_")[1].split("x")[0])
        assert (b["type"], b["groups"], b["base_width"], b["style"]) == ("ResNeXt", groups, 4, "pytorch")
        assert f"resnext101_{groups}x4d" in b["init_cfg"]["checkpoint"]


def test_r101_backbone_has_23_blocks_in_res4_and_x101_is_grouped():
    r101 = meta_model(GA / "ga_faster_r101_caffe_fpn_1x_coco.toml").backbone
    assert [len(getattr(r101, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert r101.layer1[0].conv1.stride == (1, 1) and r101.layer2[0].conv1.stride == (2, 2)  # caffe style
    x32 = meta_model(GA / "ga_rpn_x101_32x4d_fpn_1x_coco.toml").backbone
    x64 = meta_model(GA / "ga_retinanet_x101_64x4d_fpn_1x_coco.toml").backbone
    for net, groups in ((x32, 32), (x64, 64)):
        assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
        conv2 = net.layer1[0].conv2
        assert conv2.groups == groups and conv2.out_channels == groups * 4
        assert net.layer2[0].conv2.stride == (2, 2)  # pytorch style: the stride on the 3x3


def test_multiscale_2x_retinanet_settings():
    cfg = config(GA / "ga_retinanet_r101_caffe_fpn_mstrain_2x.toml")
    resize = [t for t in cfg["data"]["train"]["pipeline"] if t["type"] == "Resize"][0]
    assert resize["img_scale"] == [[1333, 480], [1333, 960]] and resize["multiscale_mode"] == "range"
    test_aug = cfg["data"]["test"]["pipeline"][1]
    assert test_aug["img_scale"] == [1333, 800]
    assert cfg["runner"]["max_epochs"] == 24 and cfg["lr_config"]["step"] == [16, 22]
    assert cfg["optimizer"]["lr"] == 0.01 and cfg["optimizer_config"]["grad_clip"]["max_norm"] == 35
    norm = [t for t in cfg["data"]["train"]["pipeline"] if t["type"] == "Normalize"][0]
    assert norm["to_rgb"] is False and norm["std"] == [1.0, 1.0, 1.0]


def test_ga_fast_rcnn_is_fast_rcnn_on_300_ga_rpn_proposals():
    """GA-Fast R-CNN has no GA module: the Fast R-CNN reference layout; the GA settings are the RoI
    assigner at 0.6, 256 RoIs, the finer box coder, the caffe backbone and the GA-RPN proposal files."""
    name = "ga_fast_r50_caffe_fpn_1x_coco"
    keys = reference_keys_or_skip("fast_rcnn_r50_fpn_1x_coco")
    model = meta_model(GA / f"{name}.toml")
    assert state_dict_layout(model) == keys.entries and count(model) == keys.param_count
    cfg = config(GA / f"{name}.toml")
    m = cfg["model"]
    assert m["type"] == "FastRCNN" and m["backbone"]["style"] == "caffe"
    assert m["roi_head"]["bbox_head"]["bbox_coder"]["target_stds"] == [0.05, 0.05, 0.1, 0.1]
    assigner = m["train_cfg"]["rcnn"]["assigner"]
    assert (assigner["pos_iou_thr"], assigner["neg_iou_thr"], assigner["min_pos_iou"]) == (0.6, 0.6, 0.6)
    assert m["train_cfg"]["rcnn"]["sampler"]["num"] == 256 and m["test_cfg"]["rcnn"]["score_thr"] == 0.001
    loads = {split: cfg["data"][split]["pipeline"][1] for split in ("train", "val", "test")}
    assert all(t["type"] == "LoadProposals" and "ga_rpn" in t["proposal_file"] for t in loads.values())
    assert loads["train"]["num_max_proposals"] == 300 and loads["test"].get("num_max_proposals") is None
    assert cfg["optimizer_config"]["grad_clip"]["max_norm"] == 35
