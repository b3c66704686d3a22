"""detcore.testing.fake_batch and check_loss_falls: the batch is what the metas say, the check catches
a model that does not learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from detcore.testing import check_loss_falls, fake_batch, train_steps


def test_fake_batch_layout_and_ground_truth():
    batch = fake_batch(3, [(40, 50), (64, 33), (20, 20)], num_classes=4, boxes_per_image=[2, 0, 3],
                       scale_factor=2.0, with_masks=True, with_ignored=True, seed=5)
    assert batch["imgs"].shape == (3, 3, 64, 64)  # padded to multiples of 32
    for meta, gt, ign, (h, w), n in zip(batch["img_metas"], batch["gt_instances"],
                                        batch["gt_ignored_instances"], [(40, 50), (64, 33), (20, 20)],
                                        [2, 0, 3]):
        assert meta["img_shape"] == (h, w, 3) and meta["batch_input_shape"] == (64, 64)
        assert meta["ori_shape"] == (h // 2, round(w / 2), 3) and meta["scale_factor"] == [2.0] * 4
        assert gt.bboxes.shape == (n, 4) and gt.labels.shape == (n,) and len(ign) == 1
        if n:
            assert bool((gt.bboxes[:, 2] <= w).all() and (gt.bboxes[:, 3] <= h).all())
            assert bool((gt.bboxes[:, :2] >= 0).all()) and int(gt.labels.max()) < 4
        assert gt.masks.masks.shape == (n, 64, 64)
        for box, mask in zip(gt.bboxes.long().tolist(), gt.masks.masks):
            x1, y1, x2, y2 = box
            assert int(mask.sum()) == (x2 - x1) * (y2 - y1) and mask[y1, x1] == 1
    img0 = batch["imgs"][0]
    assert float(img0[:, 40:, :].abs().sum()) == 0  # padding is zero
    same = fake_batch(3, [(40, 50), (64, 33), (20, 20)], num_classes=4, boxes_per_image=[2, 0, 3],
                      scale_factor=2.0, seed=5)
    assert torch.equal(same["imgs"], batch["imgs"])
    with pytest.raises(ValueError, match="2 sizes and 3 box counts"):
        fake_batch(3, [(8, 8), (8, 8)])


class _Quadratic(nn.Module):
    """loss = (w - 3)^2: falls under gradient descent unless lr is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, imgs, img_metas, gt_instances=None, gt_ignored_instances=None):
        return {"loss_w": (self.w - 3) ** 2, "acc": torch.tensor(1.0)}


def test_check_loss_falls_passes_and_catches_a_model_that_does_not_learn():
    batch = fake_batch(1, (32, 32))
    log = check_loss_falls(_Quadratic(), batch, iterations=10, lr=0.05)
    assert log[0]["loss"] == pytest.approx(9.0) and log[0]["loss_w"] == pytest.approx(9.0)
    with pytest.raises(AssertionError, match="loss did not fall over 5 iterations: 9.0000 -> 9.0000"):
        check_loss_falls(_Quadratic(), batch, iterations=5, lr=0.0)
    with pytest.raises(KeyError, match="no loss 'loss_cls'"):
        check_loss_falls(_Quadratic(), batch, iterations=2, keys=("loss_cls",))
    assert len(train_steps(_Quadratic(), batch, iterations=3, optimizer="adam")) == 3
