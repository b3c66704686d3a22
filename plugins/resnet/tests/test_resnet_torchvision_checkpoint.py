"""A torchvision-style ResNet-50 ImageNet checkpoint loads into ResNet(depth=50) with no missing or
unexpected keys.

torchvision is not importable here, so the checkpoint is made by the test: the names and shapes come
from a hand-written description of torchvision's ResNet-50 (stem ``conv1``/``bn1``, four ``layer``s of
bottlenecks with ``conv1..3``/``bn1..3`` and ``downsample.0/1`` on the first block, the classifier
``fc``), the values from a locally built module's state dict, in torchvision's order. As in
torchvision's published files, the batch norms carry no ``num_batches_tracked``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from det_plugin_resnet import ResNet

from detcore.models import load_checkpoint


def torchvision_resnet50_layout() -> list[tuple[str, tuple[int, ...]]]:
    """Parameter and running-stat names and shapes of torchvision's ``resnet50`` state dict, in order."""

    def bn(name: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"{name}.{k}", (c,)) for k in ("weight", "bias", "running_mean", "running_var")]

    entries = [("conv1.weight", (64, 3, 7, 7))] + bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for j in range(blocks):
            p = f"layer{stage}.{j}"
            entries += [(f"{p}.conv1.weight", (planes, inplanes, 1, 1))] + bn(f"{p}.bn1", planes)
            entries += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
            entries += [(f"{p}.conv3.weight", (planes * 4, planes, 1, 1))] + bn(f"{p}.bn3", planes * 4)
            if j == 0:
                entries += [(f"{p}.downsample.0.weight", (planes * 4, inplanes, 1, 1))]
                entries += bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    return entries + [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]


def make_torchvision_checkpoint() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    source = ResNet(depth=50)
    source.init_weights()
    values = [v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")]
    for v in values:  # make every entry distinguishable
        v.add_(torch.rand_like(v.float()).to(v.dtype))
    layout = torchvision_resnet50_layout()
    assert len(layout) == len(values) + 2
    ckpt = {}
    for (name, shape), value in zip(layout, values):
        assert tuple(value.shape) == shape, name
        ckpt[name] = value.clone()
    ckpt["fc.weight"], ckpt["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return ckpt


def test_layout_matches_resnet50_keys() -> None:
    with torch.device("meta"):
        model = ResNet(depth=50)
    ours = [
        (k, tuple(v.shape)) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    ]
    assert ours == torchvision_resnet50_layout()[:-2]


def test_torchvision_checkpoint_loads_strictly() -> None:
    ckpt = make_torchvision_checkpoint()
    model = ResNet(depth=50)
    result = model.load_state_dict(dict(ckpt), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    own = model.state_dict()
    for name, value in ckpt.items():
        if not name.startswith("fc."):
            assert torch.equal(own[name], value), name


def test_torchvision_checkpoint_through_init_cfg(tmp_path: Path) -> None:
    ckpt = make_torchvision_checkpoint()
    path = tmp_path / "resnet50-tv.pth"
    torch.save(ckpt, path)
    model = ResNet(depth=50, init_cfg={"type": "Pretrained", "checkpoint": str(path)})
    model.init_weights()
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ckpt.items() if not k.startswith("fc."))
    # zero_init_residual belongs to the default initialisation, it must not touch loaded weights
    assert torch.equal(model.layer1[0].bn3.weight, ckpt["layer1.0.bn3.weight"])
    # the kernel's loader reports nothing missing or unexpected
    assert load_checkpoint(ResNet(depth=50), str(path), strict=True) == ([], [])
