"""bf16 compute (detcore.models.precision) and Conv-BN folding (detcore.models.fusion).

bf16 detections are checked against fp32's on tiny seeded models (RetinaNet, FCOS, Faster R-CNN): at least
95% of fp32's top-100 must be found in the bf16 result with the same label and IoU >= 0.9; every
floating output of a bf16 inference is float32; the precision setting reaches the config, the CLI and
the API; hardware without native bf16 falls back to fp32 with a warning. The bf16 checks run on every
machine: where the CPU has no native bf16 they bypass the capability check (emulated bf16, same rounding).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import pytest
import torch
from torch import nn

import detcore
from detcore.config import load_config
from detcore.models import precision as P
from detcore.models.fusion import fuse_conv_bn, fuse_detector_conv_bn
from detcore.ops.bbox_overlaps import box_overlaps
from detcore.testing import two_image_batch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "retinanet": ROOT / "configs/retinanet/retinanet_shapes.toml",
    "fcos": ROOT / "configs/fcos/fcos_shapes.toml",
    "faster_rcnn": ROOT / "configs/faster_rcnn/faster_rcnn_shapes.toml",
    "mask_rcnn": ROOT / "configs/mask_rcnn/mask_rcnn_shapes.toml",
}
needs_bf16 = pytest.mark.usefixtures("bf16_or_emulated")


@pytest.fixture
def bf16_or_emulated(monkeypatch):
    """bf16 where the CPU computes it natively, else emulated (the capability check bypassed: PyTorch's
    generic kernels round to bfloat16 as the native ones do, only slower), so the accuracy checks run on
    every machine."""
    if not P.bf16_supported("cpu"):
        monkeypatch.setattr(P, "bf16_supported", lambda device="cpu": True)


def seeded_model(family: str) -> nn.Module:
    """The family's shapes model, seeded. Dense heads get a spread-out classifier (std 1) and no score
    threshold: with the prior-probability init every anchor scores 0.01 and the top-100 is a tie."""
    model_cfg = load_config(CONFIGS[family]).to_dict()["model"]
    if "bbox_head" in model_cfg:
        model_cfg["test_cfg"]["score_thr"] = 0.0
    torch.manual_seed(0)
    model = detcore.build("detector", model_cfg)
    model.init_weights()
    if "bbox_head" in model_cfg:
        with torch.no_grad():
            for name, p in model.bbox_head.named_parameters():
                if name.endswith("_cls.weight"):
                    p.normal_(0, 1.0)
    return model.eval()


def eval_batch() -> dict:
    batch = two_image_batch()
    return {k: v for k, v in batch.items() if k in ("imgs", "img_metas")}


def matched_fraction(ref, other, top: int = 100) -> float:
    """Share of ``ref``'s ``top`` highest-scoring detections that ``other`` has with the same label and
    IoU >= 0.9 (or every coordinate within 0.5 px: clipped zero-area boxes have no IoU)."""
    order = ref.scores.argsort(descending=True)[:top]
    boxes, labels = ref.bboxes[order], ref.labels[order]
    if len(other) == 0:
        return 0.0
    iou = box_overlaps(boxes, other.bboxes)
    close = (boxes[:, None, :] - other.bboxes[None]).abs().amax(-1) <= 0.5
    same = labels[:, None] == other.labels[None]
    return float((((iou >= 0.9) | close) & same).any(1).float().mean())


def float_fields(result) -> dict[str, torch.dtype]:
    return {k: v.dtype for k, v in result._fields.items() if torch.is_tensor(v) and v.is_floating_point()}


@needs_bf16
@pytest.mark.parametrize("family", ["retinanet", "fcos", "faster_rcnn"])
def test_bf16_detections_match_fp32(family):
    model = seeded_model(family)
    batch = eval_batch()
    with torch.inference_mode():
        fp32 = model(**batch)
        assert P.set_precision(model, "bf16") == "bf16"
        bf16 = model(**batch)
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.backbone.conv1.weight.dtype == torch.float32  # master weights stay float32
    for ref, got in zip(fp32, bf16):
        assert len(ref) > 0
        assert matched_fraction(ref, got) >= 0.95
        assert set(float_fields(got).values()) == {torch.float32}
    # switching back restores the fp32 results exactly (hooks removed, layout back to NCHW)
    P.set_precision(model, "fp32")
    with torch.inference_mode():
        again = model(**batch)
    assert not model._precision_handles
    for ref, got in zip(fp32, again):
        torch.testing.assert_close(got.bboxes, ref.bboxes, rtol=0, atol=0)


@needs_bf16
def test_bf16_inference_outputs_are_float32_with_masks():
    model = seeded_model("mask_rcnn")
    model.roi_head.test_cfg = dict(model.roi_head.test_cfg, max_per_img=20)  # 20 masks are enough here
    P.set_precision(model, "bf16")
    seen = []
    # the RoI heads' raw outputs are float32 where post-processing starts; features stay bf16
    model.roi_head.bbox_head.register_forward_hook(lambda m, a, out: seen.append(out))
    model.backbone.register_forward_hook(lambda m, a, out: seen.append(("backbone", out[0].dtype)))
    with torch.inference_mode():
        results = model(**eval_batch())
    assert ("backbone", torch.bfloat16) in seen
    cls_score, bbox_pred = seen[-1]
    assert cls_score.dtype == bbox_pred.dtype == torch.float32
    for result in results:
        assert result.has("masks")
        assert set(float_fields(result).values()) <= {torch.float32}
        assert result.bboxes.dtype == torch.float32


def test_unsupported_cpu_falls_back_with_warning(monkeypatch):
    monkeypatch.setattr(P, "bf16_supported", lambda device="cpu": False)
    model = seeded_model("retinanet")
    with pytest.warns(P.PrecisionFallbackWarning, match="no native bfloat16"):
        assert P.set_precision(model, "bf16") == "fp32"
    assert model.precision == "fp32" and not model._precision_handles
    assert model.backbone.conv1.weight.is_contiguous()


def test_bad_precision_values_are_refused():
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\], got 'fp16'"):
        P.check_precision("fp16", "precision")
    with pytest.raises(detcore.errors.ConfigError, match="precision"):
        from detcore.config import validate_config

        validate_config(load_config(CONFIGS["retinanet"], ['precision="half"']))


def test_precision_reaches_the_api(tmp_path):
    from detcore.api import inference_detector, init_detector

    expected = "bf16" if P.bf16_supported("cpu") else "fp32"
    cfg = load_config(CONFIGS["retinanet"], ['precision="bf16"'])
    with pytest.warns(P.PrecisionFallbackWarning) if expected == "fp32" else contextlib.nullcontext():
        model = init_detector(cfg)
    assert model.precision == expected  # the config's key
    assert init_detector(cfg, precision="fp32").precision == "fp32"  # the argument wins
    model = init_detector(CONFIGS["retinanet"])
    assert model.precision == "fp32"  # default
    image = (torch.rand(64, 80, 3) * 255).to(torch.uint8).numpy()
    result = inference_detector(model, image, precision="bf16")
    assert model.precision == expected
    assert set(float_fields(result).values()) <= {torch.float32}


@pytest.mark.parametrize("command", ["infer", "test", "train", "demo"])
def test_precision_flag_on_every_command(command, monkeypatch):
    from detcore.cli import main as cli_main

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    module = {"infer": "infer_cmd", "test": "test", "train": "train", "demo": "demo_cmd"}[command]
    mod = __import__(f"detcore.cli.{module}", fromlist=["add_parser"])
    mod.add_parser(subparsers)
    positional = {"infer": ["c.toml", "w.pth", "img.jpg", "--out", "o"], "test": ["c.toml", "w.pth"],
                  "train": ["c.toml"], "demo": []}[command]
    args = parser.parse_args([command, *positional, "--precision", "bf16"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args([command, *positional, "--precision", "fp16"])
    seen = {}
    if command == "infer":
        import detcore.api

        def fake_init(*a, **k):
            seen.update(k)
            raise RuntimeError("stop")

        monkeypatch.setattr(detcore.api, "init_detector", fake_init)
    elif command in ("test", "train"):
        from detcore.engine import Runner

        def fake_from_config(cfg, **k):
            seen.update(k)
            raise RuntimeError("stop")

        monkeypatch.setattr(Runner, "from_config", staticmethod(fake_from_config))
        monkeypatch.setattr("detcore.config.load_config", lambda *a, **k: load_config(CONFIGS["retinanet"]))
    else:
        import detcore.tools.demo

        def fake_demo(config, out_dir, epochs, num_pictures, overrides, score_thr):
            seen["precision"] = "bf16" if 'precision="bf16"' in overrides else None
            raise RuntimeError("stop")

        monkeypatch.setattr(detcore.tools.demo, "run_demo", fake_demo)
    with pytest.raises(RuntimeError, match="stop"):
        args.func(args)
    assert seen["precision"] == "bf16"
    assert cli_main is not None


@needs_bf16
def test_bf16_training_uses_the_amp_machinery_with_float32_master_weights(tmp_path):
    from detcore.engine import Runner

    cfg = load_config(CONFIGS["retinanet"], ['precision="bf16"'])
    cfg.data.pop("load_from", None)
    runner = Runner.from_config(cfg, work_dir=tmp_path, device="cpu")
    assert runner.precision == "bf16" and runner.amp_enabled and runner.amp_dtype == torch.bfloat16
    assert runner.grad_scaler is None
    model = runner.unwrapped_model
    model.train()
    seen = []
    model.bbox_head.register_forward_hook(lambda m, a, out: seen.append(out[0][0].dtype))
    with runner.autocast():
        losses = model(**two_image_batch())
    assert seen == [torch.float32]  # the losses see float32 head outputs
    total = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if "loss" in k)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    grad = model.bbox_head.retina_cls.weight.grad
    assert grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- Conv-BN folding -------------------------------------------------------------------------------


def bn_model() -> nn.Module:
    """RetinaNet-shapes with BatchNorm (random running statistics) in the backbone, in eval mode."""
    model_cfg = load_config(CONFIGS["retinanet"]).to_dict()["model"]
    model_cfg["backbone"]["norm_cfg"] = {"type": "BN", "requires_grad": True}
    model_cfg["backbone"]["norm_eval"] = True
    model_cfg["test_cfg"]["score_thr"] = 0.0
    torch.manual_seed(0)
    model = detcore.build("detector", model_cfg)
    model.init_weights()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for name, p in model.bbox_head.named_parameters():
            if name.endswith("_cls.weight"):
                p.normal_(0, 1.0)
    return model.eval()


def test_fold_bn_into_conv_matches_conv_then_bn():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)).eval()
    seq[1].running_mean.uniform_(-1, 1)
    seq[1].running_var.uniform_(0.5, 2)
    seq[1].weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 16, 16)
    expected = seq(x)
    assert fuse_conv_bn(seq) == 1
    assert isinstance(seq[1], nn.Identity)
    torch.testing.assert_close(seq(x), expected, rtol=1e-5, atol=1e-5)
    train_bn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))  # training mode: batch stats, not folded
    assert fuse_conv_bn(train_bn) == 0


def test_fused_detector_matches_unfused():
    model = bn_model()
    batch = eval_batch()
    fused, count = fuse_detector_conv_bn(model)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules()) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.backbone.modules())
    with torch.inference_mode():
        feats, fused_feats = model.extract_feat(batch["imgs"]), fused.extract_feat(batch["imgs"])
        ref, got = model(**batch), fused(**batch)
    for a, b in zip(feats, fused_feats):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    for a, b in zip(ref, got):
        assert matched_fraction(a, b) == 1.0
        torch.testing.assert_close(b.scores, a.scores, rtol=1e-5, atol=1e-6)


def test_init_detector_fast_path_options():
    from detcore.api import init_detector

    cfg = load_config(CONFIGS["retinanet"], ['model.backbone.norm_cfg={type="BN"}'])
    plain = init_detector(cfg)  # the checkpoint's layout: BatchNorm kept, NCHW
    assert plain.fused_conv_bn == 0 and "backbone.bn1.running_mean" in plain.state_dict()
    fast = init_detector(cfg, fuse_conv_bn=True, channels_last=True)
    assert fast.fused_conv_bn > 0 and "backbone.bn1.running_mean" not in fast.state_dict()
    assert fast.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert init_detector(CONFIGS["retinanet"], fuse_conv_bn=True).fused_conv_bn == 0  # GroupNorm: none


# -- detcore benchmark -------------------------------------------------------------------------------


def test_benchmark_command_times_both_precisions(capsys):
    from detcore.cli.main import main

    rc = main(["benchmark", str(CONFIGS["retinanet"]), "--images", "2", "--warmup", "0", "--size", "96x64"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 images (random 96x64 images), batch 1" in out
    assert out.count(" images/s, ") == 2 and "bf16 / fp32: " in out


def test_benchmark_reports_the_fallback(monkeypatch):
    from detcore.tools.benchmark import benchmark

    monkeypatch.setattr(P, "bf16_supported", lambda device="cpu": False)
    with pytest.warns(P.PrecisionFallbackWarning):
        report = benchmark(CONFIGS["retinanet"], precisions=["bf16"], images=1, warmup=0, size=(64, 64))
    assert report["precisions"]["bf16"]["ran"] == "fp32" and report["images"] == 1
    with pytest.raises(ValueError, match="--images"):
        benchmark(CONFIGS["retinanet"], images=0)
