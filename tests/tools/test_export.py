"""detcore export: ONNX (onnxruntime) and TorchScript graphs give detcore's detections, also on an input
other than the one traced, and run without detcore or detcore-native."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detcore.tools.export import export, match_detections

REPO = Path(__file__).resolve().parents[2]
SHAPES = {
    "retinanet": "configs/retinanet/retinanet_shapes.toml",
    "fcos": "configs/fcos/fcos_shapes.toml",
    "ssd": "configs/ssd/ssd_shapes.toml",
}


def model_and_input(config, seed=0, size=(200, 260)):
    from detcore.api import _sample, _test_pipeline, init_detector
    from detcore.data import collate

    torch.manual_seed(0)
    # score_thr 0: an untrained model then returns max_per_img detections, so there is much to compare
    model = init_detector(REPO / config, cfg_options=["model.test_cfg.score_thr=0.0"])
    image = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    batch = collate([_test_pipeline(model.cfg, from_array=True)(_sample(image, 0))], pad_size_divisor=32)
    return model, batch["imgs"], batch["img_metas"][0]


def detcore_detections(model, imgs, meta):
    head = model.bbox_head
    head.test_cfg = {**dict(head.test_cfg), "postprocess_order": "topk_first"}
    with torch.no_grad():
        ref = model(imgs, [{**meta, "scale_factor": [1.0] * 4}])[0]
    return ref.bboxes, ref.scores, ref.labels


@pytest.mark.parametrize("family", sorted(SHAPES))
def test_onnx_detections_equal_detcores_on_another_image(family, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model, imgs, meta = model_and_input(SHAPES[family])
    path = export(model, imgs, meta, tmp_path / f"{family}.onnx", "onnx")
    graph = onnx.load(str(path)).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}  # standard operators only
    assert "NonMaxSuppression" in {node.op_type for node in graph.node}
    _, other, other_meta = model_and_input(SHAPES[family], seed=1)  # same size, other pixels
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = [torch.from_numpy(x) for x in session.run(None, {"img": other.numpy()})]
    expected = detcore_detections(model, other, other_meta)
    report = match_detections(exported, expected)
    assert report["counts"][0] == report["counts"][1] > 0
    assert report["matched"] == report["counts"][1], report


def test_torchscript_runs_without_detcore(tmp_path):
    model, imgs, meta = model_and_input(SHAPES["retinanet"])
    path = export(model, imgs, meta, tmp_path / "retinanet.pt", "torchscript")
    _, other, other_meta = model_and_input(SHAPES["retinanet"], seed=2)
    torch.save(other, tmp_path / "input.pt")
    script = (
        "import sys; sys.modules['detcore'] = None; sys.modules['detcore_native'] = None\n"
        "import torch\n"
        f"m = torch.jit.load({str(path)!r}); x = torch.load({str(tmp_path / 'input.pt')!r})\n"
        f"torch.save(tuple(m(x)), {str(tmp_path / 'out.pt')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = torch.load(tmp_path / "out.pt")
    report = match_detections(exported, detcore_detections(model, other, other_meta))
    assert report["matched"] == report["counts"][1] > 0 and report["max_box_diff"] < 1e-3


def test_raw_maps_with_dynamic_size_and_the_command(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from detcore.cli.main import main

    model, imgs, _ = model_and_input(SHAPES["fcos"], size=(300, 420))  # another size than traced
    ckpt = tmp_path / "fcos.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "raw.onnx"
    args = ["export", str(REPO / SHAPES["fcos"]), str(ckpt), "--no-postprocess", "--dynamic",
            "--shape", "200", "260", "--out", str(out), "--verify"]  # fmt: skip
    assert main(args) == 0
    assert "verify: 15 maps" in capsys.readouterr().out
    maps = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"img": imgs.numpy()})
    with torch.no_grad():
        expected = [m for maps_ in model.bbox_head(model.extract_feat(imgs)) for m in maps_]
    assert [m.shape for m in maps] == [tuple(e.shape) for e in expected]
    assert max(float(np.abs(m - e.numpy()).max()) for m, e in zip(maps, expected)) < 1e-3
    assert main(["export", str(REPO / SHAPES["fcos"]), "--dynamic", "--out", str(out)]) == 1
    assert "--dynamic needs --no-postprocess" in capsys.readouterr().err


def test_two_stage_detectors_are_refused():
    from detcore.api import init_detector
    from detcore.errors import DetcoreError
    from detcore.tools.export import ExportableDetector

    model = init_detector(REPO / "configs/faster_rcnn/faster_rcnn_shapes.toml")
    with pytest.raises(DetcoreError, match="two-stage export is not implemented"):
        ExportableDetector(model, {"img_shape": (64, 64, 3)})
