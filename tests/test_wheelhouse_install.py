"""Distribution proof: ``pip install det-plugin-fcos`` (or ``det-plugin-rcnn``, or ``det-plugin-htc``) from
a wheelhouse brings in what it depends on.

The wheels of detcore, det-plugin-resnet, det-plugin-fpn, det-plugin-fcos, det-plugin-rcnn,
det-plugin-cascade and det-plugin-htc are built into a temporary wheelhouse; a fresh virtual environment
then installs **only** ``det-plugin-fcos`` with ``pip install --no-index --find-links WHEELHOUSE``, so
detcore and the two plugins FCOS builds on must come from dependency resolution; a second one installs
only ``det-plugin-rcnn`` the same way.
Third-party dependencies (torch, numpy, pluggy, ...) are not downloaded: the running environment's
packages are linked into a directory that a ``.pth`` file puts on the fresh environment's path, where
pip sees them (with their metadata) as installed. Finally a config that names only
``plugins = ["fcos"]`` (``["rcnn"]``: a tiny Faster R-CNN) trains two iterations with ``detcore train``.
A third environment installs only ``det-plugin-htc``: the chain det-plugin-cascade -> det-plugin-rcnn ->
det-plugin-resnet, det-plugin-fpn -> detcore resolves from the wheelhouse, ``detcore plugins`` lists every
link, and the repository's ``configs/htc/htc_shapes.toml`` (copied with its base configs) trains two
iterations there with the semantic branch on the shapes maps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "detcore": ROOT,
    "det-plugin-resnet": ROOT / "plugins" / "resnet",
    "det-plugin-fpn": ROOT / "plugins" / "fpn",
    "det-plugin-fcos": ROOT / "plugins" / "fcos",
    "det-plugin-rcnn": ROOT / "plugins" / "rcnn",
    "det-plugin-cascade": ROOT / "plugins" / "cascade",
    "det-plugin-htc": ROOT / "plugins" / "htc",
}
# what belongs to this project (never linked from the development environment)
OWN_PREFIXES = ("detcore", "det_plugin", "det-plugin", "__editable__", "_detcore", "easy-install",
                "distutils-precedence")

TINY_CONFIG = """
plugins = ["fcos"]
seed = 0

[model]
type = "FCOS"
[model.backbone]
type = "ResNet"
depth = 18
base_channels = 8
out_indices = [1, 2, 3]
frozen_stages = -1
norm_cfg = { type = "BN" }
norm_eval = false
[model.neck]
type = "FPN"
in_channels = [16, 32, 64]
out_channels = 32
start_level = 0
add_extra_convs = "on_output"
relu_before_extra_convs = true
num_outs = 5
[model.bbox_head]
type = "FCOSHead"
num_classes = 3
in_channels = 32
feat_channels = 32
stacked_convs = 1
strides = [8, 16, 32, 64, 128]
norm_cfg = { type = "GN", num_groups = 8 }
[model.test_cfg]
nms_pre = 100
score_thr = 0.05
nms = { type = "nms", iou_threshold = 0.5 }
max_per_img = 10

[data]
batch_size = 2
num_workers = 0
pad_size_divisor = 32
[data.train]
type = "ShapesDataset"
split = "train"
root = "shapes"
num_images = 4
num_val = 2
image_size = [64, 64]
pipeline = [
    { type = "LoadImageFromFile" },
    { type = "LoadAnnotations", with_bbox = true },
    { type = "Normalize", mean = [123.675, 116.28, 103.53], std = [58.395, 57.12, 57.375], to_rgb = true },
    { type = "Pad", size_divisor = 32 },
    { type = "PackDetInputs" },
]

[optimizer]
type = "SGD"
lr = 0.01
momentum = 0.9
weight_decay = 0.0001
[optimizer_config]
grad_clip = { max_norm = 35, norm_type = 2 }
[lr_config]
policy = "step"
step = [100]
[runner]
type = "IterBasedRunner"
max_iters = 2
[checkpoint_config]
interval = 2
[log_config]
interval = 1
"""


def run(cmd: list, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_wheel(source: Path, wheelhouse: Path) -> Path:
    before = set(wheelhouse.glob("*.whl"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheelhouse,
         source])
    (new,) = set(wheelhouse.glob("*.whl")) - before
    return new


def link_third_party(dest: Path) -> None:
    """Symlink the running environment's packages, except this project's and pip itself, into ``dest``.

    setuptools is linked too: torch declares it as a requirement, so pip must see it installed.
    """
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if (name.startswith(OWN_PREFIXES) or name.endswith(".pth") or name == "pip"
                or (name.startswith("pip-") and name.endswith(".dist-info"))):
            continue
        (dest / name).symlink_to(entry)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    """Every distribution's wheel, built once: ``(folder, {distribution: wheel})``."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    return folder, {name: build_wheel(src, folder) for name, src in SOURCES.items()}


def make_env(tmp: Path, wheelhouse: Path, wheels: dict, distribution: str) -> dict:
    """A fresh venv in which only ``distribution`` was installed from the wheelhouse."""
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    link_third_party(tmp / "deps")
    (site / "zz_test_deps.pth").write_text(str(tmp / "deps") + "\n")
    # the distribution alone: its dependencies must be resolved from the wheelhouse
    install = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-index", "--find-links",
                   wheelhouse, distribution])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DETCORE_DISABLE_PLUGINS")}
    env["OMP_NUM_THREADS"] = "1"
    return {"tmp": tmp, "py": py, "venv": venv, "site": site, "env": env, "wheels": wheels,
            "install_log": install.stdout}


@pytest.fixture(scope="module")
def fcos_env(tmp_path_factory, wheelhouse):
    return make_env(tmp_path_factory.mktemp("env_fcos"), *wheelhouse, "det-plugin-fcos")


@pytest.fixture(scope="module")
def rcnn_env(tmp_path_factory, wheelhouse):
    return make_env(tmp_path_factory.mktemp("env_rcnn"), *wheelhouse, "det-plugin-rcnn")


@pytest.fixture(scope="module")
def htc_env(tmp_path_factory, wheelhouse):
    return make_env(tmp_path_factory.mktemp("env_htc"), *wheelhouse, "det-plugin-htc")


def test_dependencies_come_from_the_wheelhouse(fcos_env):
    names = sorted(p.name.split("-")[0] for p in fcos_env["site"].glob("*.dist-info"))
    # exactly this project's four distributions were installed, nothing third-party was fetched
    assert names == ["det_plugin_fcos", "det_plugin_fpn", "det_plugin_resnet", "detcore"]
    log = fcos_env["install_log"]
    for dist in ("det-plugin-fcos", "det-plugin-resnet", "det-plugin-fpn", "detcore"):
        assert dist in log.replace("_", "-")
    # the installed copies are the ones imported, not the source tree
    code = "import detcore, det_plugin_fcos, det_plugin_fpn, det_plugin_resnet as r; print(r.__file__)"
    out = run([fcos_env["py"], "-c", code], env=fcos_env["env"], cwd=fcos_env["tmp"]).stdout.strip()
    assert out.startswith(str(fcos_env["site"]))


def test_plugins_are_listed(fcos_env):
    out = run([fcos_env["venv"] / "bin" / "detcore", "plugins", "--json"], env=fcos_env["env"],
              cwd=fcos_env["tmp"]).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["fcos"]["distribution"] == "det-plugin-fcos" and plugins["fcos"]["status"] == "loaded"
    assert plugins["fcos"]["components"] == {"dense_head": ["FCOSHead"], "detector": ["FCOS"]}
    assert {p["name"] for p in plugins.values() if not p["builtin"]} == {"fcos", "fpn", "resnet"}


def test_two_training_iterations_from_a_config_naming_only_fcos(fcos_env):
    work = fcos_env["tmp"] / "run"
    work.mkdir()
    (work / "tiny.toml").write_text(TINY_CONFIG)
    detcore = fcos_env["venv"] / "bin" / "detcore"
    result = run([detcore, "train", "tiny.toml", "--work-dir", "wd", "--device", "cpu"],
                 env=fcos_env["env"], cwd=work)
    assert "Iter [2/2]" in result.stdout + result.stderr
    assert (work / "wd" / "iter_2.pth").exists()
    (log,) = (work / "wd").glob("*.log.json")
    records = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
    assert len(records) == 2
    for rec in records:
        assert all(k in rec for k in ("loss_cls", "loss_bbox", "loss_centerness"))
        total = rec["loss_cls"] + rec["loss_bbox"] + rec["loss_centerness"]
        assert rec["loss"] == pytest.approx(total, rel=1e-3)


# -- det-plugin-rcnn alone ---------------------------------------------------------------------------

TINY_RCNN_CONFIG = """
plugins = ["rcnn"]
seed = 0

[model]
type = "FasterRCNN"
[model.backbone]
type = "ResNet"
depth = 18
base_channels = 8
out_indices = [0, 1, 2, 3]
frozen_stages = -1
norm_cfg = { type = "BN" }
norm_eval = false
[model.neck]
type = "FPN"
in_channels = [8, 16, 32, 64]
out_channels = 16
num_outs = 5
[model.rpn_head]
type = "RPNHead"
in_channels = 16
feat_channels = 16
[model.roi_head]
type = "StandardRoIHead"
[model.roi_head.bbox_roi_extractor]
type = "SingleRoIExtractor"
roi_layer = { type = "RoIAlign", output_size = 7 }
out_channels = 16
featmap_strides = [4, 8, 16, 32]
[model.roi_head.bbox_head]
type = "Shared2FCBBoxHead"
in_channels = 16
fc_out_channels = 32
num_classes = 3
[model.train_cfg.rpn]
assigner = { type = "MaxIoUAssigner", pos_iou_thr = 0.7, neg_iou_thr = 0.3, min_pos_iou = 0.3 }
sampler = { type = "RandomSampler", num = 64, pos_fraction = 0.5, add_gt_as_proposals = false }
[model.train_cfg.rpn_proposal]
nms_pre = 200
max_per_img = 100
nms = { type = "nms", iou_threshold = 0.7 }
min_bbox_size = 0
[model.train_cfg.rcnn]
assigner = { type = "MaxIoUAssigner", pos_iou_thr = 0.5, neg_iou_thr = 0.5, min_pos_iou = 0.5 }
sampler = { type = "RandomSampler", num = 64, pos_fraction = 0.25, add_gt_as_proposals = true }
[model.test_cfg.rpn]
nms_pre = 200
max_per_img = 100
nms = { type = "nms", iou_threshold = 0.7 }
min_bbox_size = 0
[model.test_cfg.rcnn]
score_thr = 0.05
nms = { type = "nms", iou_threshold = 0.5 }
max_per_img = 10
""" + TINY_CONFIG[TINY_CONFIG.index("[data]"):]


def test_rcnn_dependencies_come_from_the_wheelhouse(rcnn_env):
    names = sorted(p.name.split("-")[0] for p in rcnn_env["site"].glob("*.dist-info"))
    assert names == ["det_plugin_fpn", "det_plugin_rcnn", "det_plugin_resnet", "detcore"]
    code = "import det_plugin_rcnn as r; print(r.__file__)"
    out = run([rcnn_env["py"], "-c", code], env=rcnn_env["env"], cwd=rcnn_env["tmp"]).stdout.strip()
    assert out.startswith(str(rcnn_env["site"]))
    out = run([rcnn_env["venv"] / "bin" / "detcore", "plugins", "--json"], env=rcnn_env["env"],
              cwd=rcnn_env["tmp"]).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    rcnn = plugins["rcnn"]
    assert rcnn["distribution"] == "det-plugin-rcnn" and rcnn["status"] == "loaded"
    assert rcnn["components"]["dense_head"] == ["RPNHead"]
    assert {"RPN", "FastRCNN", "FasterRCNN"} <= set(rcnn["components"]["detector"])
    assert {p["name"] for p in plugins.values() if not p["builtin"]} == {"rcnn", "fpn", "resnet"}


def test_two_training_iterations_from_a_config_naming_only_rcnn(rcnn_env):
    work = rcnn_env["tmp"] / "run"
    work.mkdir()
    (work / "tiny.toml").write_text(TINY_RCNN_CONFIG)
    result = run([rcnn_env["venv"] / "bin" / "detcore", "train", "tiny.toml", "--work-dir", "wd", "--device",
                  "cpu"], env=rcnn_env["env"], cwd=work)  # fmt: skip
    assert "Iter [2/2]" in result.stdout + result.stderr
    (log,) = (work / "wd").glob("*.log.json")
    records = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
    assert len(records) == 2
    for rec in records:
        assert all(k in rec for k in ("loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox"))


# -- det-plugin-htc alone: the chain htc -> cascade -> rcnn -> resnet, fpn -> detcore --------------------

HTC_CHAIN = {"htc": "det-plugin-htc", "cascade": "det-plugin-cascade", "rcnn": "det-plugin-rcnn",
             "resnet": "det-plugin-resnet", "fpn": "det-plugin-fpn"}


def test_htc_pulls_in_the_whole_chain(htc_env):
    names = sorted(p.name.split("-")[0] for p in htc_env["site"].glob("*.dist-info"))
    assert names == ["det_plugin_cascade", "det_plugin_fpn", "det_plugin_htc", "det_plugin_rcnn",
                     "det_plugin_resnet", "detcore"]
    log = htc_env["install_log"].replace("_", "-")
    assert all(dist in log for dist in (*HTC_CHAIN.values(), "detcore"))
    # each link declares the next one (what pip resolved)
    code = ("import importlib.metadata as m, json; print(json.dumps({d: [r.split('>')[0].strip() for r in "
            "m.requires(d)] for d in ('det-plugin-htc', 'det-plugin-cascade', 'det-plugin-rcnn')}))")
    requires = json.loads(run([htc_env["py"], "-c", code], env=htc_env["env"], cwd=htc_env["tmp"]).stdout)
    assert "det-plugin-cascade" in requires["det-plugin-htc"]
    assert "det-plugin-rcnn" in requires["det-plugin-cascade"]
    assert {"det-plugin-resnet", "det-plugin-fpn"} <= set(requires["det-plugin-rcnn"])
    out = run([htc_env["venv"] / "bin" / "detcore", "plugins", "--json"], env=htc_env["env"],
              cwd=htc_env["tmp"]).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert {p["name"] for p in plugins.values() if not p["builtin"]} == set(HTC_CHAIN)
    for name, dist in HTC_CHAIN.items():
        assert plugins[name]["distribution"] == dist and plugins[name]["status"] == "loaded", plugins[name]
        assert all(f.startswith(str(htc_env["site"])) for f in plugins[name]["files"][:1])
    assert plugins["htc"]["components"] == {
        "roi_head": ["HTCMaskHead", "HybridTaskCascadeRoIHead"], "detector": ["HybridTaskCascade"],
    }
    assert plugins["cascade"]["components"]["roi_head"] == ["CascadeRoIHead"]


def test_two_training_iterations_of_the_htc_shapes_config(htc_env):
    import shutil

    work = htc_env["tmp"] / "run"
    for sub in ("htc", "_base_"):
        shutil.copytree(ROOT / "configs" / sub, work / "configs" / sub)
    # one epoch of two batches of two 64 px images, the shapes data generated in the work dir
    sets = ["runner.max_epochs=1", "data.batch_size=2", "log_config.interval=1", "lr_config.warmup_iters=1"]
    for split in ("train", "val"):
        sets += [f"data.{split}.root=shapes", f"data.{split}.num_train=4", f"data.{split}.num_val=2",
                 f"data.{split}.image_size=[64, 64]"]
    sets += ["data.train.pipeline.2.img_scale=[64, 64]"]
    result = run([htc_env["venv"] / "bin" / "detcore", "train", "configs/htc/htc_shapes.toml", "--work-dir",
                  "wd", "--device", "cpu", "--set", *sets], env=htc_env["env"], cwd=work)  # fmt: skip
    (log,) = (work / "wd").glob("*.log.json")
    records = [json.loads(line) for line in log.read_text().splitlines() if '"loss"' in line]
    assert len(records) == 2, result.stdout + result.stderr
    for rec in records:
        for key in ("loss_rpn_cls", "loss_semantic_seg", "s0.loss_cls", "s1.loss_bbox", "s2.loss_mask"):
            assert key in rec and rec[key] == rec[key], (key, rec)  # present and not NaN
