"""The preamble every loss shares (``BaseLoss``): reduction and its override, ``avg_factor`` with
``mean``, ``weight`` fitted to ``pred``, ``loss_weight`` - checked for every registered loss."""

from __future__ import annotations

import pytest
import torch

import detcore
from detcore.models.losses import BaseLoss

N = 5


def _boxes(gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(N, 2, generator=gen) * 10
    return torch.cat([xy, xy + 1 + torch.rand(N, 2, generator=gen) * 10], dim=1)


def _inputs(name: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(the loss table's options, pred, target) of a small case for loss ``name``."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3, 1])  # 3 = background for 3 classes
    if name in ("CrossEntropyLoss", "FocalLoss", "GHMC", "CrossEntropyLoss/sigmoid"):
        pred = torch.randn(N, 3 if name != "CrossEntropyLoss" else 4, generator=gen)
        opts = {"use_sigmoid": True} if name == "CrossEntropyLoss/sigmoid" else {}
        return opts, pred, labels
    if name.endswith("IoULoss"):
        return {}, _boxes(gen), _boxes(gen)
    if name == "GaussianFocalLoss":  # probabilities against a Gaussian heatmap with exact peaks (1.0)
        target = torch.rand(N, 3, generator=gen)
        target[0, 1] = target[3, 2] = 1.0
        return {}, torch.randn(N, 3, generator=gen).sigmoid(), target
    return {}, torch.randn(N, 4, generator=gen), torch.randn(N, 4, generator=gen)


# the kernel's losses (third-party plugins may register losses of their own design)
REGISTERED = sorted(
    n for n in detcore.get_registry().names("loss")
    if detcore.get_registry().get("loss", n).factory.__module__.startswith("detcore.")
)
CASES = REGISTERED + ["CrossEntropyLoss/sigmoid"]


def _build(name: str, **kwargs) -> BaseLoss:
    opts, _, _ = _inputs(name)
    return detcore.build("loss", {"type": name.partition("/")[0], **opts, **kwargs})


def test_every_registered_loss_is_a_base_loss():
    assert len(REGISTERED) >= 13
    for name in REGISTERED:
        assert isinstance(_build(name), BaseLoss), name


@pytest.mark.parametrize("name", CASES)
def test_reduction_and_its_override(name):
    _, pred, target = _inputs(name)
    loss = _build(name)
    none = loss(pred, target, reduction_override="none")
    total = loss(pred, target, reduction_override="sum")
    torch.testing.assert_close(total, none.sum())
    # an override beats the module's reduction
    summing = _build(name, reduction="sum")
    torch.testing.assert_close(summing(pred, target), total)
    torch.testing.assert_close(summing(pred, target, reduction_override="mean"), loss(pred, target))
    if not name.startswith("GHM"):
        torch.testing.assert_close(loss(pred, target), none.mean())
    with pytest.raises(ValueError, match=rf"{name.partition('/')[0]}.forward: reduction must be one of"):
        loss(pred, target, reduction_override="max")
    with pytest.raises(ValueError, match="reduction must be one of"):
        _build(name, reduction="avg")


@pytest.mark.parametrize("name", CASES)
def test_avg_factor_divides_the_sum_with_mean(name):
    _, pred, target = _inputs(name)
    loss = _build(name)
    none = loss(pred, target, reduction_override="none")
    got = loss(pred, target, avg_factor=2.5)
    if loss.uses_avg_factor:
        torch.testing.assert_close(got, none.sum() / 2.5)
        # with "none" the avg_factor is not used
        torch.testing.assert_close(loss(pred, target, avg_factor=2.5, reduction_override="none"), none)
    else:  # GHM: averaged by its own count of weighted entries (the reference)
        torch.testing.assert_close(got, loss(pred, target))
        torch.testing.assert_close(got, none.sum() / none.numel())  # every weight is 1 here


@pytest.mark.parametrize("name", CASES)
def test_loss_weight_multiplies(name):
    _, pred, target = _inputs(name)
    torch.testing.assert_close(_build(name, loss_weight=3.0)(pred, target), 3.0 * _build(name)(pred, target))


@pytest.mark.parametrize("name", CASES)
def test_weight_fits_pred(name):
    _, pred, target = _inputs(name)
    loss = _build(name)
    row = torch.tensor([1.0, 0.0, 2.0, 0.5, 1.0])
    got = loss(pred, target, weight=row, reduction_override="sum")
    layout = loss.weight_layout
    if name.startswith("GHM"):
        # the weight spreads over the row's entries; zero-weight entries do not count
        full = row[:, None].expand_as(pred)
        torch.testing.assert_close(got, loss(pred, target, weight=full, reduction_override="sum"))
        assert float(loss(pred, target, weight=torch.zeros(N), reduction_override="sum")) == 0.0
        return
    none = loss(pred, target, reduction_override="none")
    if none.dim() == 2:  # element-wise loss (N, K): a row weight applies to every column
        torch.testing.assert_close(got, (none * row[:, None]).sum())
    else:  # one loss per row
        torch.testing.assert_close(got, (none * row).sum())
    if layout == "box":
        # a per-coordinate weight (N, 4) is averaged per box
        coord = torch.rand(N, 4, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(loss(pred, target, weight=coord, reduction_override="sum"),
                                   (none * coord.mean(-1)).sum())
    if layout in ("element", "box"):
        with pytest.raises(ValueError, match=rf"{name}: weight \(3,\)"):
            loss(pred, target, weight=torch.ones(3))


def test_element_weight_per_column_broadcasts():
    loss = _build("L1Loss")
    _, pred, target = _inputs("L1Loss")
    col = torch.tensor([[1.0, 0.0, 2.0, 1.0]])
    none = loss(pred, target, reduction_override="none")
    torch.testing.assert_close(loss(pred, target, weight=col, reduction_override="sum"), (none * col).sum())


def test_iou_losses_short_cut_an_all_zero_weight_keeping_the_graph():
    _, pred, target = _inputs("GIoULoss")
    pred = pred.clone().requires_grad_(True)
    for name in ("IoULoss", "GIoULoss", "DIoULoss", "CIoULoss", "BoundedIoULoss"):
        out = _build(name, loss_weight=5.0)(pred, target, weight=torch.zeros(N))
        assert out.item() == 0.0 and out.requires_grad
