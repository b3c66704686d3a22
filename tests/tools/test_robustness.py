"""Corruptions by hand-checkable properties, the mPC / rPC summary, and test-robustness end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from detcore.data.corruptions import BENCHMARK, CORRUPTIONS, EXTRA, corrupt
from detcore.tools.robustness import corrupted_config, resolve_corruptions, summarize

REPO = Path(__file__).resolve().parents[2]


def scene(h=64, w=80):
    """Grey with a bright coloured square and a dark bar: edges for the blurs, flat areas for noise."""
    img = np.full((h, w, 3), 120, np.uint8)
    img[10:40, 10:40] = (220, 90, 60)
    img[45:55, :] = 30
    return img


def test_every_corruption_keeps_shape_and_type_and_is_seeded():
    img = scene()
    assert len(BENCHMARK) == 15 and len(EXTRA) == 4 and len(CORRUPTIONS) == 19
    for name in CORRUPTIONS:
        for severity in (1, 5):
            out = corrupt(img, name, severity, seed=3)
            assert out.shape == img.shape and out.dtype == np.uint8, name
            assert np.array_equal(out, corrupt(img, name, severity, seed=3)), name  # reproducible
            assert not np.array_equal(out, img), (name, severity)
    assert corrupt(img, "fog", 0) is img
    with pytest.raises(ValueError, match="severity must be 1..5"):
        corrupt(img, "fog", 6)
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        corrupt(img, "rain", 1)


def test_noise_strengths_follow_the_tables():
    flat = np.full((200, 200, 3), 128, np.uint8)
    # gaussian noise: standard deviation 0.08 / 0.38 of the range at severities 1 / 5
    for severity, sigma in ((1, 0.08), (5, 0.38)):
        diff = corrupt(flat, "gaussian_noise", severity, seed=0).astype(float) - 128
        # severity 5 clips at 0 and 255, which narrows the spread
        assert np.std(diff) == pytest.approx(sigma * 255, rel=0.03 if severity == 1 else 0.2)
    # impulse noise: 3% / 27% of the values become 0 or 255
    for severity, amount in ((1, 0.03), (5, 0.27)):
        out = corrupt(flat, "impulse_noise", severity, seed=0)
        assert ((out == 0) | (out == 255)).mean() == pytest.approx(amount, abs=0.01)


def test_digital_corruptions_by_hand():
    img = scene()
    # contrast at severity 1 keeps the mean and scales deviations by 0.4
    out = corrupt(img, "contrast", 1).astype(float)
    mean = img.reshape(-1, 3).mean(0)
    assert out.reshape(-1, 3).mean(0) == pytest.approx(mean, abs=0.6)
    assert out[20, 20, 0] == pytest.approx(mean[0] + 0.4 * (220 - mean[0]), abs=0.6)
    # brightness adds 0.1 to HSV's value: a grey of 120 becomes 120 + 25.5
    brighter = corrupt(np.full((4, 4, 3), 120, np.uint8), "brightness", 1)[0, 0].tolist()
    assert brighter in ([145] * 3, [146] * 3)
    # pixelate at severity 5 (factor 0.25): 4x4 blocks of one colour
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blocks = corrupt(noisy, "pixelate", 5).reshape(16, 4, 16, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    # JPEG: the lower quality of a higher severity loses more
    errors = [np.abs(corrupt(noisy, "jpeg_compression", s).astype(int) - noisy).mean() for s in (1, 3, 5)]
    assert errors == sorted(errors)
    # blurs keep flat regions and soften edges
    blurred = corrupt(img, "defocus_blur", 3).astype(int)
    assert abs(blurred[25, 25, 0] - 220) <= 2 and 30 < blurred[39, 25, 0] - 120 < 100


def test_elastic_transform_keeps_objects_on_their_boxes():
    # a white square on black, 400 px: the field is uniform +-2 px noise smoothed with sigma 4 px, times
    # alpha 12.5..30, so pixels move by a few px at most and the square's centroid stays put; a stronger
    # severity (the same seed: the same field, a larger alpha) changes more pixels
    img = np.zeros((400, 400, 3), np.uint8)
    img[150:250, 120:220] = 255
    changed = []
    for severity in range(1, 6):
        out = corrupt(img, "elastic_transform", severity, seed=0)[..., 0].astype(float)
        ys, xs = np.nonzero(out > 127)
        assert abs(ys.mean() - 199.5) < 1.5 and abs(xs.mean() - 169.5) < 1.5, severity
        inside = out[165:235, 135:205]  # 15 px in from every edge: untouched by a few-px field
        assert (inside == 255).all(), severity
        changed.append(np.abs(out - img[..., 0]).mean())
    assert changed == sorted(changed) and changed[0] > 0


def test_groups_and_summary():
    assert resolve_corruptions(["noise", "fog", "gaussian_noise"]) == [
        "gaussian_noise", "shot_noise", "impulse_noise", "fog"]  # fmt: skip
    with pytest.raises(Exception, match="unknown 'rain'"):
        resolve_corruptions(["rain"])
    s = summarize(0.5, {"fog": {1: 0.4, 2: 0.3}, "snow": {1: 0.2, 2: 0.1}})
    assert s == {"P_clean": 0.5, "mPC": pytest.approx(0.25), "rPC": pytest.approx(0.5)}
    assert np.isnan(summarize(0.0, {"fog": {1: 0.0}})["rPC"])


def shapes_config(tmp_path):
    from detcore.config import load_config

    return load_config(REPO / "configs/fcos/fcos_shapes.toml", [
        f'data.test.root="{tmp_path / "shapes"}"', "data.test.num_images=2", "data.test.num_train=2",
        "data.test.image_size=[96, 96]"])  # fmt: skip


def test_corrupted_config_corrupts_the_test_images(tmp_path):
    from detcore.data import build_dataset

    cfg = shapes_config(tmp_path)
    bad = corrupted_config(cfg, "impulse_noise", 5, seed=1)
    steps = [step["type"] for step in bad["data"]["test"]["pipeline"]]
    assert steps[:2] == ["LoadImageFromFile", "Corrupt"]
    assert cfg["data"]["test"]["pipeline"][1]["type"] != "Corrupt"  # the original is untouched
    clean = build_dataset(dict(cfg["data"]["test"]), where="data.test")[0]
    noisy = build_dataset(dict(bad["data"]["test"]), where="data.test")[0]
    a, b = (sample.get("inputs", sample.get("img")) for sample in (clean, noisy))
    a, b = (x[0] if isinstance(x, list) else x for x in (a, b))
    assert a.shape == b.shape and not np.allclose(np.asarray(a), np.asarray(b))


def test_command_end_to_end(tmp_path, capsys):
    import torch

    import detcore
    from detcore.cli.main import main

    cfg = shapes_config(tmp_path)
    torch.manual_seed(0)
    model = detcore.build("detector", cfg["model"])
    ckpt = tmp_path / "model.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, ckpt)
    out = tmp_path / "robust.json"
    overrides = [f'data.test.root="{tmp_path / "shapes"}"', "data.test.num_images=2", "data.test.num_train=2",
                 "data.test.image_size=[96, 96]"]  # fmt: skip
    args = ["test-robustness", str(REPO / "configs/fcos/fcos_shapes.toml"), str(ckpt), "--corruptions",
            "gaussian_noise", "contrast", "--severities", "0", "2", "--out", str(out)]  # fmt: skip
    for option in overrides:
        args += ["--set", option]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"clean", "gaussian_noise", "contrast"}
    assert set(result["runs"]["contrast"]) == {"2"} and "bbox_mAP" in result["runs"]["clean"]["0"]
    assert "Mean Performance under Corruption [mPC] (bbox_mAP)" in capsys.readouterr().out
