"""``detcore test`` (``Runner.test``) runs the inference fast path ``detcore infer`` runs: Conv-BN folded
into a copy (exact within float tolerance), channels-last weights; validation during training does not."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from detcore.config import load_config
from detcore.engine import Runner
from detcore.engine.hook import Hook

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo" / "demo_shapes.toml"


class Collect(Hook):
    def __init__(self) -> None:
        super().__init__()
        self.outputs: list = []

    def after_test_iter(self, runner, batch_idx, batch, outputs) -> None:
        self.outputs.extend(outputs)


def test_detcore_test_runs_the_inference_fast_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DETCORE_DATA", str(tmp_path / "data"))
    sizes = [f"data.{split}.num_images=2" for split in ("train", "val", "test")]
    cfg = load_config(DEMO, [*sizes, "model.test_cfg.score_thr=0.0"])
    runner = Runner.from_config(cfg, work_dir=tmp_path / "work", device="cpu")
    model = runner.unwrapped_model
    assert runner.test_loop.fast_path and not runner.val_loop.fast_path
    torch.manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics away from the identity, spread-out scores
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        model.bbox_head.conv_cls.weight.normal_(0, 1.0)
    ran = []
    inference_model = runner.test_loop.inference_model
    monkeypatch.setattr(
        runner.test_loop, "inference_model", lambda m: ran.append(inference_model(m)) or ran[-1]
    )
    collect = Collect()
    runner.register_hook(collect)

    runner.test()
    fast = ran[-1]
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fast is not model and fast.fused_conv_bn == num_bn > 0
    assert fast.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert "backbone.bn1.running_mean" in model.state_dict()  # the run's own model is left as it was
    assert model.backbone.conv1.weight.is_contiguous()
    folded, collect.outputs = collect.outputs, []

    runner.test_loop.fast_path = False  # the model as it is: the same detections within float tolerance
    runner.test()
    assert ran[-1] is model
    plain = collect.outputs
    assert len(folded) == len(plain) == 2
    for a, b in zip(plain, folded):
        assert len(a) == len(b) == 100
        oa, ob = a.scores.argsort(descending=True), b.scores.argsort(descending=True)
        torch.testing.assert_close(b.scores[ob], a.scores[oa], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.bboxes[ob][:20], a.bboxes[oa][:20], rtol=0, atol=1e-2)
