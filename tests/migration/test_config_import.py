"""`detcore config import`: reference Python configs (read, never executed) against detcore's own TOML
configs of the same models: same built parameters, same merged values."""

from __future__ import annotations

import os.path as osp
from pathlib import Path

import pytest

import detcore
from detcore.cli.main import main
from detcore.config import load_config, validate_config
from detcore.errors import ConfigError
from detcore.migration.config_import import import_config
from detcore.migration.pyconfig import read_py_config

from .reference_configs import write_reference_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory) -> Path:
    return write_reference_tree(tmp_path_factory.mktemp("reference_configs"))


def imported(ref_root: Path, rel: str, tmp_path: Path):
    result = import_config(ref_root / rel)
    out = tmp_path / (Path(rel).stem + ".toml")
    out.write_text(result.to_toml())
    return result, load_config(out)


def assert_within(imported: dict, own: dict, path: str = "") -> int:
    """Every value of ``imported`` equals ``own``'s at the same key path; returns the leaves compared."""
    if isinstance(imported, dict):
        assert isinstance(own, dict), path
        n = 0
        for key, value in imported.items():
            assert key in own, f"{path}.{key} is not in detcore's config"
            n += assert_within(value, own[key], f"{path}.{key}")
        return n
    assert imported == own, f"{path}: imported {imported!r}, detcore's config {own!r}"
    return 1


def n_params(cfg) -> tuple[int, dict]:
    model = detcore.build("detector", cfg["model"])
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return sum(p.numel() for p in model.parameters()), shapes


def full_path(ds: dict, key: str) -> str:
    return osp.join(ds.get("data_root", ""), ds[key])


# (reference config, detcore's config, the reference checkpoint's parameter count and state-dict entries)
CASES = [
    ("retinanet/retinanet_r50_fpn_1x_coco.py", "retinanet/retinanet_r50_fpn_1x_coco.toml", 37_968_692, 354),
    (
        "fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py", "fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.toml",
        32_295_322, 369,
    ),
    ("ssd/ssd300_coco.py", "ssd/ssd300_coco.toml", 34_305_206, 71),
]


@pytest.mark.parametrize("rel, own_path, ref_params, ref_entries", CASES, ids=["retinanet", "fcos", "ssd300"])
def test_import_matches_detcore_config(ref_root, tmp_path, rel, own_path, ref_params, ref_entries):
    result, cfg = imported(ref_root, rel, tmp_path)
    own = load_config(REPO / "configs" / own_path)
    assert result.style == "2.x"
    assert sorted(cfg["plugins"]) == sorted(own["plugins"])
    # the model: every imported value as detcore's config has it, and the same parameters
    assert assert_within(cfg["model"], own["model"], "model") > 25
    count, shapes = n_params(cfg)
    own_count, own_shapes = n_params(own)
    assert count == own_count == ref_params and shapes == own_shapes and len(shapes) == ref_entries
    # pipelines exactly (Collect/DefaultFormatBundle -> PackDetInputs), datasets by their full paths
    for split in ("train", "val", "test"):
        ds, own_ds = cfg["data"][split], own["data"][split]
        if ds["type"] == "RepeatDataset":
            assert ds["times"] == own_ds["times"] == 5
            ds, own_ds = ds["dataset"], own_ds["dataset"]
        assert ds["pipeline"] == own_ds["pipeline"], split
        assert full_path(ds, "ann_file") == full_path(own_ds, "ann_file")
        assert full_path(ds, "img_prefix") == full_path(own_ds, "img_prefix")
        assert ds.get("test_mode", False) == own_ds.get("test_mode", False) == (split != "train")
    for key in ("batch_size", "num_workers"):
        assert cfg["data"][key] == own["data"][key]
    for table in ("optimizer", "optimizer_config", "lr_config", "runner", "evaluator", "evaluation",
                  "checkpoint_config"):
        assert assert_within(cfg[table], own[table], table) >= 0
        assert set(cfg[table]) == set(own[table]), table


def test_retinanet_values_and_validation(ref_root, tmp_path):
    result, cfg = imported(ref_root, "retinanet/retinanet_r50_fpn_1x_coco.py", tmp_path)
    # the child's optimizer and its _delete_ of the base's optimizer_config
    assert cfg["optimizer"]["lr"] == 0.01
    assert cfg["optimizer_config"] == {"grad_clip": {"max_norm": 35, "norm_type": 2}}
    assert cfg["model"]["bbox_head"]["anchor_generator"]["strides"] == [8, 16, 32, 64, 128]
    assert cfg["evaluator"] == {"type": "CocoMetric", "metric": ["bbox"]}
    assert cfg["load_from"] == "" and cfg["custom_hooks"] == []
    assert any("NumClassCheckHook dropped" in n for n in result.notes)
    validate_config(cfg)


def test_ssd_reports_unregistered_types_with_install_hint(ref_root, tmp_path):
    result, cfg = imported(ref_root, "ssd/ssd300_coco.py", tmp_path)
    assert result.unknown_types == [("CheckInvalidLossHook", "custom_hooks[0]")]
    assert result.install_hints() == [
        "custom_hooks[0]: type 'CheckInvalidLossHook' is registered by no installed plugin "
        "(pip install det-plugin-checkinvalidloss)"
    ]
    assert "# missing: custom_hooks[0]: type 'CheckInvalidLossHook'" in result.to_toml()
    # open-mmlab:// names become the download addresses detcore's configs use; Expand's mean came from
    # img_norm_cfg['mean'] (indexing a variable)
    assert cfg["model"]["backbone"]["init_cfg"]["checkpoint"].endswith("vgg16_caffe-292e1171.pth")
    assert cfg["data"]["train"]["dataset"]["pipeline"][2]["mean"] == [123.675, 116.28, 103.53]
    assert cfg["lr_config"]["step"] == [16, 22] and cfg["runner"]["max_epochs"] == 24


def test_two_level_base_chain(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.py").write_text(
        "depth = 50\n"
        "model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=depth, num_stages=4,\n"
        "             norm_cfg=dict(type='BN', requires_grad=True)), neck=dict(type='FPN', num_outs=5))\n"
        "lr = 0.02\n"
        "optimizer = dict(type='SGD', lr=lr, momentum=0.9)\n"
        "work_dir = 'work_dirs/r%d' % depth\n"
    )
    (tmp_path / "mid.py").write_text(
        "_base_ = './base/root.py'\n"
        "model = dict(backbone=dict(depth=101), neck=dict(_delete_=True, type='FPN', num_outs=6))\n"
        "optimizer = dict(lr='{{ _base_.lr }}', momentum={{_base_.lr}} * 0 + 1)\n"
        "lr2 = optimizer['lr'] / 2\n"
    )
    (tmp_path / "child.py").write_text(
        '"""a two-level chain"""\n'
        "_base_ = ['mid.py']\n"
        "scales = (1333, 800)\n"
        "name = f'retinanet_{depth}_{scales[1]}'\n"  # depth: a variable of a base
        "model = dict(backbone=dict(norm_cfg=dict(requires_grad=False)))\n"
        "optimizer = dict(momentum='{}'.format(0.8) and 0.8, weight_decay=1e-4 * 2 ** 0)\n"
        "lr_config = dict(step=[8 + 0, 12 - 1], warmup_ratio=1.0 / 3)\n"
        "checkpoint_config = dict(interval=2)\n"
        "evaluation = dict(interval=3, metric='bbox', save_best='auto')\n"
    )
    merged = read_py_config(tmp_path / "child.py")
    assert merged["model"]["backbone"] == {
        "type": "ResNet", "depth": 101, "num_stages": 4, "norm_cfg": {"type": "BN", "requires_grad": False}
    }
    assert merged["model"]["neck"] == {"type": "FPN", "num_outs": 6}  # _delete_ dropped the base's keys
    # '{{ _base_.lr }}' is the base's value; lr2 computed in the middle file from it
    assert merged["optimizer"] == {"type": "SGD", "lr": 0.02, "momentum": 0.8, "weight_decay": 1e-4}
    assert merged["lr2"] == 0.01
    assert merged["name"] == "retinanet_50_800" and merged["work_dir"] == "work_dirs/r50"
    assert merged["lr_config"] == {"step": [8, 11], "warmup_ratio": 1.0 / 3}
    result = import_config(tmp_path / "child.py")
    assert result.data["work_dir"] == "work_dirs/r50"
    assert result.data["checkpoint_config"] == {"interval": 2, "save_best": "auto"}
    assert result.data["evaluation"] == {"interval": 3} and result.data["evaluator"]["metric"] == ["bbox"]
    assert result.data["lr_config"]["policy"] == "step"
    assert "not imported (no detcore counterpart): depth, lr, lr2, scales, name" in result.notes


def test_one_x_style_retinanet(tmp_path):
    (tmp_path / "retinanet_r50_fpn_1x.py").write_text(
        "model = dict(type='RetinaNet', pretrained='torchvision://resnet50',\n"
        "    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),\n"
        "                  frozen_stages=1, style='pytorch'),\n"
        "    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, start_level=1,\n"
        "              add_extra_convs=True, num_outs=5),\n"
        "    bbox_head=dict(type='RetinaHead', num_classes=81, in_channels=256, stacked_convs=4,\n"
        "        feat_channels=256, octave_base_scale=4, scales_per_octave=3,\n"
        "        anchor_ratios=[0.5, 1.0, 2.0], anchor_strides=[8, 16, 32, 64, 128],\n"
        "        target_means=[.0, .0, .0, .0], target_stds=[1.0, 1.0, 1.0, 1.0],\n"
        "        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),\n"
        "        loss_bbox=dict(type='SmoothL1Loss', beta=0.11, loss_weight=1.0)))\n"
        "train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,\n"
        "    min_pos_iou=0, ignore_iof_thr=-1), allowed_border=-1, pos_weight=-1, debug=False)\n"
        "test_cfg = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,\n"
        "    nms=dict(type='nms', iou_thr=0.5), max_per_img=100)\n"
        "data = dict(imgs_per_gpu=2, workers_per_gpu=2)\n"
        "optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)\n"
        "optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))\n"
        "lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=1.0 / 3,\n"
        "                 step=[8, 11])\n"
        "total_epochs = 12\n"
    )
    result = import_config(tmp_path / "retinanet_r50_fpn_1x.py")
    assert result.style == "1.x"
    model = result.data["model"]
    head = model["bbox_head"]
    assert head["num_classes"] == 80  # 1.x counted the background
    assert head["anchor_generator"] == {"type": "AnchorGenerator", "octave_base_scale": 4,
                                        "scales_per_octave": 3, "ratios": [0.5, 1.0, 2.0],
                                        "strides": [8, 16, 32, 64, 128]}
    assert head["bbox_coder"]["type"] == "DeltaXYWHBBoxCoder"
    assert model["neck"]["add_extra_convs"] == "on_input"
    assert model["backbone"]["init_cfg"] == {"type": "Pretrained", "checkpoint": "torchvision://resnet50"}
    assert model["test_cfg"]["nms"] == {"type": "nms", "iou_threshold": 0.5}
    assert model["train_cfg"]["assigner"]["neg_iou_thr"] == 0.4
    assert result.data["data"] == {"batch_size": 2, "num_workers": 2}
    assert result.data["runner"] == {"type": "EpochBasedRunner", "max_epochs": 12}
    # the same parameters as detcore's RetinaNet
    own = load_config(REPO / "configs/retinanet/retinanet_r50_fpn_1x_coco.toml")
    assert n_params(result.data)[1] == n_params(own)[1]


def test_three_x_style_pieces(tmp_path):
    (tmp_path / "retinanet_3x.py").write_text(
        "model = dict(type='RetinaNet', data_preprocessor=dict(type='DetDataPreprocessor',\n"
        "    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True,\n"
        "    pad_size_divisor=32))\n"
        "backend_args = None\n"
        "train_pipeline = [dict(type='LoadImageFromFile', backend_args=backend_args),\n"
        "    dict(type='LoadAnnotations', with_bbox=True),\n"
        "    dict(type='Resize', scale=(1333, 800), keep_ratio=True),\n"
        "    dict(type='RandomFlip', prob=0.5), dict(type='PackDetInputs')]\n"
        "ms_pipeline = [dict(type='RandomResize', scale=[(1333, 640), (1333, 800)], keep_ratio=True),\n"
        "    dict(type='RandomResize', scale=(1333, 800), ratio_range=(0.1, 2.0), keep_ratio=True),\n"
        "    dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 800)], keep_ratio=True)]\n"
        "test_dataloader = dict(batch_size=1, dataset=dict(type='CocoDataset', ann_file='a.json',\n"
        "    pipeline=ms_pipeline))\n"
        "train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=True,\n"
        "    dataset=dict(type='CocoDataset', data_root='data/coco/',\n"
        "        ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),\n"
        "        filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline))\n"
        "val_evaluator = dict(type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',\n"
        "    metric='bbox', format_only=False)\n"
        "train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)\n"
        "optim_wrapper = dict(type='OptimWrapper',\n"
        "    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),\n"
        "    clip_grad=dict(max_norm=35, norm_type=2))\n"
        "param_scheduler = [\n"
        "    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),\n"
        "    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)]\n"
        "default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1),\n"
        "    logger=dict(type='LoggerHook', interval=50))\n"
    )
    data = import_config(tmp_path / "retinanet_3x.py").data
    own = load_config(REPO / "configs/retinanet/retinanet_r50_fpn_1x_coco.toml")
    assert "data_preprocessor" not in data["model"]
    train = data["data"]["train"]
    # Normalize and Pad move from the data preprocessor into the pipeline, before PackDetInputs
    assert train["pipeline"] == own["data"]["train"]["pipeline"]
    assert train["img_prefix"] == "train2017/" and train["min_size"] == 32 and train["filter_empty_gt"]
    assert data["data"]["batch_size"] == 2 and data["data"]["persistent_workers"] is True
    assert data["evaluator"]["metric"] == ["bbox"] and data["evaluation"] == {"interval": 1}
    assert data["optimizer"] == own["optimizer"] and data["optimizer_config"] == own["optimizer_config"]
    assert data["lr_config"] == {**own["lr_config"], "gamma": 0.1}
    assert data["runner"] == own["runner"]
    assert data["checkpoint_config"] == {"interval": 1} and data["log_config"]["interval"] == 50
    # 3.x multi-scale resizes -> Resize with a range, a ratio range or a choice of scales
    assert data["data"]["test_batch_size"] == 1
    two = [[1333, 640], [1333, 800]]
    assert data["data"]["test"]["pipeline"] == [
        {"type": "Resize", "img_scale": two, "keep_ratio": True, "multiscale_mode": "range"},
        {"type": "Resize", "img_scale": [1333, 800], "keep_ratio": True, "ratio_range": [0.1, 2.0]},
        {"type": "Resize", "img_scale": two, "multiscale_mode": "value", "keep_ratio": True},
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("import os", r"x\.py:2: 'import os' is not allowed"),
        ("from mmdet.apis import x", r"x\.py:2: 'from mmdet.apis import x' is not allowed"),
        ("from mmengine.config import read_base", r"x\.py:2: .* 3\.x pure-Python configs \(read_base\)"),
        ("model = dict(a=open('f'))", r"x\.py:2: call of 'open\(...\)' is not allowed"),
        ("model = os.path.join('a', 'b')", r"x\.py:2: call of 'os.path.join\(...\)' is not allowed"),
        ("f = lambda x: x", r"x\.py:2: a Lambda expression is not allowed"),
        ("m = os.sep", r"x\.py:2: attribute access '.sep' is not allowed"),
        ("m = [i for i in (1, 2)]", r"x\.py:2: a ListComp expression is not allowed"),
        ("m = undefined + 1", r"x\.py:2: name 'undefined' is not defined"),
        ("def f():\n    pass", r"x\.py:2: a FunctionDef statement is not allowed"),
        ("m = dict(x=1).keys", r"x\.py:2: attribute access '.keys' is not allowed"),
        ("m = {{_base_.nothing}}", r"x\.py:2: _base_.nothing: no base of this file defines 'nothing'"),
    ],
)
def test_refusals_name_file_and_line(tmp_path, line, message):
    (tmp_path / "x.py").write_text("a = 1\n" + line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_py_config(tmp_path / "x.py")


def test_base_errors(tmp_path):
    (tmp_path / "a.py").write_text("_base_ = 'b.py'\n")
    (tmp_path / "b.py").write_text("_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match="circular _base_ chain"):
        read_py_config(tmp_path / "a.py")
    (tmp_path / "c.py").write_text("_base_ = ['d.py', 'e.py']\n")
    (tmp_path / "d.py").write_text("x = 1\n")
    (tmp_path / "e.py").write_text("x = 2\n")
    with pytest.raises(ConfigError, match="key 'x' is set by two bases, d.py and e.py"):
        read_py_config(tmp_path / "c.py")
    (tmp_path / "f.py").write_text("_base_ = 'missing.py'\n")
    with pytest.raises(ConfigError, match=r"reference config not found: .*missing\.py \(a _base_ of"):
        read_py_config(tmp_path / "f.py")


def test_cli_writes_toml_and_refuses_code(ref_root, tmp_path, capsys):
    out = tmp_path / "r.toml"
    ref = ref_root / "retinanet/retinanet_r50_fpn_1x_coco.py"
    assert main(["config", "import", str(ref), "-o", str(out)]) == 0
    assert load_config(out)["model"]["type"] == "RetinaNet"
    assert "reference 2.x style" in capsys.readouterr().err
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nmodel = dict()\n")
    assert main(["config", "import", str(bad)]) == 1
    assert "bad.py:1: 'import os' is not allowed" in capsys.readouterr().err
