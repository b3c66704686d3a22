"""CenterRegionAssigner: effective (positive), shadowed (class ignored) and ignored priors on
hand-made boxes, and the smaller-object priority on overlaps."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("det_plugin_fsaf", reason="det-plugin-fsaf is not installed")

from det_plugin_fsaf import CenterRegionAssigner  # noqa: E402


def grid_priors(stride: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Squares of side ``stride`` centred at ``stride * (i, j)`` on a ``size x size`` grid, and their
    centres ``(n, 2)``, row-major (y then x)."""
    ys, xs = torch.meshgrid(torch.arange(size) * stride, torch.arange(size) * stride, indexing="ij")
    centres = torch.stack([xs.flatten(), ys.flatten()], dim=1).float()
    half = stride / 2
    return torch.cat([centres - half, centres + half], dim=1), centres


def test_reference_docstring_example():
    assigner = CenterRegionAssigner(0.2, 0.2)
    priors = torch.tensor([[0.0, 0, 10, 10], [10, 10, 20, 20]])
    result = assigner.assign(priors, torch.tensor([[0.0, 0, 10, 10]]))
    assert result.gt_inds.tolist() == [1, 0]


def test_effective_and_shadow_regions_of_one_box():
    """Box 0..80 (class 2), priors 8x8 every 8 px. Core (pos_scale 0.2) = 32..48: the priors centred
    at 32, 40, 48 overlap it (those at 24 and 56 do not) -> 3 x 3 positives. Shadow (neg_scale 0.5)
    = 20..60: priors centred at 24..56 overlap it -> the 5 x 5 ring outside the core has class 2
    ignored; everything else is a plain negative."""
    priors, centres = grid_priors(8, 12)
    gt = torch.tensor([[0.0, 0.0, 80.0, 80.0]])
    assigner = CenterRegionAssigner(pos_scale=0.2, neg_scale=0.5)
    result = assigner.assign(priors, gt, gt_labels=torch.tensor([2]))
    core = ((centres >= 32) & (centres <= 48)).all(dim=1)
    band = ((centres >= 24) & (centres <= 56)).all(dim=1) & ~core
    assert result.gt_inds.tolist() == core.long().tolist()
    assert result.labels.tolist() == torch.where(core, 2, -1).tolist()
    shadowed = result.get_extra_property("shadowed_labels")
    assert sorted(shadowed[:, 0].tolist()) == band.nonzero().flatten().tolist()
    assert (shadowed[:, 1] == 2).all()
    # the reference's FSAF setting 0.2 / 0.2: same positives, no shadow band
    same = CenterRegionAssigner(0.2, 0.2).assign(priors, gt, gt_labels=torch.tensor([2]))
    assert same.gt_inds.tolist() == core.long().tolist()
    assert same.get_extra_property("shadowed_labels").numel() == 0


def test_min_pos_iof_and_centre_inside_rule():
    """A prior counts as effective only if its centre is strictly inside the box and more than
    ``min_pos_iof`` of it overlaps the core."""
    gt = torch.tensor([[0.0, 0.0, 40.0, 40.0]])  # core (0.2) = 16..24
    priors = torch.tensor([
        [10.0, 10.0, 18.0, 18.0],   # overlaps the core by 2 x 2 = 4 / 64 = 0.0625
        [8.5, 8.5, 16.5, 16.5],     # 0.5 x 0.5 = 0.25 / 64 < 0.01
        [16.0, 16.0, 56.0, 56.0],   # centre (36, 36) inside, 64 / 1600 = 0.04 of it on the core
        [20.0, 20.0, 100.0, 100.0],  # centre (60, 60) outside the box
    ])  # fmt: skip
    result = CenterRegionAssigner(0.2, 0.2, min_pos_iof=0.01).assign(priors, gt)
    assert result.gt_inds.tolist() == [1, 0, 1, 0]
    assert CenterRegionAssigner(0.2, 0.2, min_pos_iof=0.1).assign(priors, gt).gt_inds.tolist() == [0, 0, 0, 0]


def test_overlapping_boxes_smaller_wins_and_the_larger_class_is_ignored_there():
    big = [0.0, 0.0, 100.0, 100.0]   # core 40..60
    small = [44.0, 44.0, 56.0, 56.0]  # core 48.8..51.2
    prior = torch.tensor([[46.0, 46.0, 54.0, 54.0]])  # in both cores
    gts = torch.tensor([big, small])
    result = CenterRegionAssigner(0.2, 0.2).assign(prior, gts, gt_labels=torch.tensor([0, 1]))
    assert result.gt_inds.tolist() == [2] and result.labels.tolist() == [1]
    assert result.get_extra_property("shadowed_labels").tolist() == [[0, 0]]  # class 0 ignored there
    # same class: the prior turns background with that class ignored (unless foreground_dominate)
    same = CenterRegionAssigner(0.2, 0.2).assign(prior, gts, gt_labels=torch.tensor([1, 1]))
    assert same.gt_inds.tolist() == [0] and same.labels.tolist() == [-1]
    assert same.get_extra_property("shadowed_labels").tolist() == [[0, 1]]
    dominate = CenterRegionAssigner(0.2, 0.2, foreground_dominate=True).assign(
        prior, gts, gt_labels=torch.tensor([1, 1]))
    assert dominate.gt_inds.tolist() == [2] and dominate.get_extra_property("shadowed_labels").numel() == 0


def test_ignored_boxes_and_empty_inputs():
    priors, centres = grid_priors(8, 6)
    crowd = torch.tensor([[0.0, 0.0, 40.0, 40.0]])  # shrunk by 0.5: 10..30
    result = CenterRegionAssigner(0.2, 0.2).assign(priors, torch.zeros(0, 4), gt_bboxes_ignore=crowd)
    inside = ((centres > 10) & (centres < 30)).all(dim=1)
    assert result.gt_inds.tolist() == torch.where(inside, -1, 0).tolist()
    assert CenterRegionAssigner(0.2, 0.2).assign(torch.zeros(0, 4), crowd).gt_inds.numel() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="pos_scale <= neg_scale"):
        CenterRegionAssigner(0.5, 0.2)
    with pytest.raises(ValueError, match="bboxes must be"):
        CenterRegionAssigner(0.2, 0.2).assign(torch.zeros(3, 5), torch.zeros(1, 4))
