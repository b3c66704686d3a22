"""Weight init functions, init_cfg tables, BaseModule, Pretrained loading and the URL cache."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch import nn

from detcore.models import (
    BaseModule,
    bias_init_with_prob,
    constant_init,
    initialize,
    kaiming_init,
    load_checkpoint,
    load_url_to_cache,
    normal_init,
    uniform_init,
    xavier_init,
)


def test_init_functions():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3)
    constant_init(conv, 0.5, bias=0.1)
    assert torch.all(conv.weight == 0.5) and torch.all(conv.bias == 0.1)
    normal_init(conv, mean=1.0, std=0.01, bias=-2.0)
    assert abs(conv.weight.mean().item() - 1.0) < 1e-3 and abs(conv.weight.std().item() - 0.01) < 1e-3
    assert torch.all(conv.bias == -2.0)
    uniform_init(conv, a=2, b=3)
    assert conv.weight.min() >= 2 and conv.weight.max() <= 3
    xavier_init(conv, distribution="uniform")
    bound = math.sqrt(6 / (64 * 9 + 64 * 9))
    assert conv.weight.abs().max() <= bound
    kaiming_init(conv)  # fan_out, relu, normal
    assert abs(conv.weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.005
    assert bias_init_with_prob(0.01) == pytest.approx(-math.log(99))
    with pytest.raises(ValueError):
        xavier_init(conv, distribution="gaussian")


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1))
        self.cls = nn.Conv2d(2, 3, 1)
        self.norm = nn.BatchNorm2d(2)


def test_initialize_layer_and_override():
    head = Head()
    initialize(
        head,
        {
            "type": "Constant",
            "layer": "Conv2d",
            "val": 2.0,
            "bias": 0.5,
            "override": {"type": "Constant", "name": "cls", "val": 0.0, "bias_prob": 0.01},
        },
    )
    assert torch.all(head.convs[0].weight == 2) and torch.all(head.convs[2].bias == 0.5)
    assert torch.all(head.cls.weight == 0)
    torch.testing.assert_close(head.cls.bias, torch.full((3,), bias_init_with_prob(0.01)))
    # a table without layer touches nothing itself; a name-only override reuses its arguments
    head2 = Head()
    before = head2.convs[0].weight.clone()
    initialize(
        head2,
        [
            {"type": "Constant", "val": 3.0, "override": {"name": "cls"}},
            {"type": "Constant", "layer": "BN", "val": 4.0},
        ],
    )
    torch.testing.assert_close(head2.convs[0].weight, before)
    assert torch.all(head2.cls.weight == 3) and torch.all(head2.norm.weight == 4)
    with pytest.raises(AttributeError, match="nope"):
        initialize(Head(), {"type": "Constant", "val": 1, "override": {"name": "nope"}})
    with pytest.raises(KeyError, match="Gaussian"):
        initialize(Head(), {"type": "Gaussian", "layer": "Conv2d"})


class Inner(BaseModule):
    def __init__(self, init_cfg=None):
        super().__init__(init_cfg)
        self.conv = nn.Conv2d(1, 1, 1)


class Outer(BaseModule):
    def __init__(self, init_cfg=None):
        super().__init__(init_cfg)
        self.inner = Inner(init_cfg={"type": "Constant", "layer": "Conv2d", "val": 7.0})
        self.conv = nn.Conv2d(1, 1, 1)


def test_base_module_children_after_parent():
    m = Outer(init_cfg={"type": "Constant", "layer": "Conv2d", "val": 1.0})
    m.init_weights()
    assert m.conv.weight.item() == 1.0 and m.inner.conv.weight.item() == 7.0
    assert m.is_init and m.inner.is_init
    m.conv.weight.data.fill_(5.0)
    m.init_weights()  # second call does nothing
    assert m.conv.weight.item() == 5.0


def test_pretrained_with_prefix_wrapper_and_module_prefix(tmp_path):
    src = Outer()
    constant_init(src.inner.conv, 3.0, bias=1.0)
    state = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    state["module.neck.other"] = torch.zeros(2)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 1}}, path)
    # prefix selects the submodule's keys: load into a bare Inner
    target = Inner(init_cfg={"type": "Pretrained", "checkpoint": str(path), "prefix": "backbone.inner."})
    target.init_weights()
    assert target.conv.weight.item() == 3.0 and target.conv.bias.item() == 1.0
    # without prefix: the whole state dict ('module.' stripped, 'state_dict' unwrapped)
    wrapper = nn.Module()
    wrapper.backbone = Outer()
    missing, unexpected = load_checkpoint(wrapper, str(path))
    assert missing == [] and unexpected == ["neck.other"]
    assert wrapper.backbone.inner.conv.weight.item() == 3.0
    with pytest.raises(RuntimeError, match="unexpected keys"):
        load_checkpoint(wrapper, str(path), strict=True)
    with pytest.raises(KeyError, match="prefix"):
        Inner(init_cfg={"type": "Pretrained", "checkpoint": str(path), "prefix": "head."}).init_weights()
    with pytest.raises(RuntimeError, match="size mismatch"):
        torch.save({"conv.weight": torch.zeros(2, 1, 1, 1)}, tmp_path / "bad.pth")
        load_checkpoint(Inner(), str(tmp_path / "bad.pth"))


def test_url_cache_with_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("DETCORE_CACHE", str(tmp_path / "default_cache"))
    payload = tmp_path / "src" / "weights-abc.pth"
    payload.parent.mkdir()
    torch.save({"conv.weight": torch.full((1, 1, 1, 1), 9.0), "conv.bias": torch.zeros(1)}, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    url = payload.as_uri()
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_url_to_cache(url, cache, sha256="0" * 64)
    assert list(cache.iterdir()) == []  # nothing kept, no partial file
    got = load_url_to_cache(url, cache, sha256=digest)
    assert got == cache / "weights-abc.pth" and got.read_bytes() == payload.read_bytes()
    assert load_url_to_cache(url, cache, sha256=digest[:8]) == got  # cached; prefix checksum accepted
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_url_to_cache(url, cache, sha256="deadbeef")  # the cached copy is checked too
    m = Inner(init_cfg={"type": "Pretrained", "checkpoint": url})
    m.init_weights()  # downloads into $DETCORE_CACHE/checkpoints
    assert m.conv.weight.item() == 9.0
    assert (tmp_path / "default_cache" / "checkpoints" / "weights-abc.pth").is_file()
