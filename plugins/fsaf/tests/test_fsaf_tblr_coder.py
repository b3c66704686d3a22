"""TBLRBBoxCoder: encoding against hand-computed distances, the round trip, clipping and bad input."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("det_plugin_fsaf", reason="det-plugin-fsaf is not installed")

from det_plugin_fsaf import TBLRBBoxCoder  # noqa: E402

# prior: the 8x8 square centred at (4, 4); box x 1..10, y 2..7
PRIOR = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
BOX = torch.tensor([[1.0, 2.0, 10.0, 7.0]])
# top = 4 - 2, bottom = 7 - 4, left = 4 - 1, right = 10 - 4 pixels; / 8 (prior h, w); / 4 (normalizer)
EXPECTED = torch.tensor([[2.0, 3.0, 3.0, 6.0]]) / 8 / 4


def test_encode_gives_the_normalised_top_bottom_left_right_distances():
    assert torch.allclose(TBLRBBoxCoder(normalizer=4.0).encode(PRIOR, BOX), EXPECTED)


def test_per_side_normalizer_and_non_square_prior():
    prior = torch.tensor([[0.0, 0.0, 16.0, 8.0]])  # centre (8, 4), w 16, h 8
    box = torch.tensor([[2.0, 1.0, 12.0, 9.0]])
    got = TBLRBBoxCoder(normalizer=[1.0, 2.0, 1.0, 2.0]).encode(prior, box)
    # top 3 / 8 / 1, bottom 5 / 8 / 2, left 6 / 16 / 1, right 4 / 16 / 2
    assert torch.allclose(got, torch.tensor([[3 / 8, 5 / 16, 6 / 16, 4 / 32]]))


def test_round_trip_on_random_boxes_and_batched_decode():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * 50
    priors = torch.cat([xy, xy + 4 + torch.rand(20, 2, generator=g) * 30], dim=1)
    centres = (priors[:, :2] + priors[:, 2:]) / 2
    # boxes around each prior's centre
    boxes = torch.cat([centres - torch.rand(20, 2, generator=g) * 20 - 1,
                       centres + torch.rand(20, 2, generator=g) * 20 + 1], dim=1)
    coder = TBLRBBoxCoder(normalizer=4.0, clip_border=False)
    codes = coder.encode(priors, boxes)
    assert (codes > 0).all()  # centres inside their boxes: every distance is positive
    assert torch.allclose(coder.decode(priors, codes), boxes, atol=1e-4)
    batched = coder.decode(priors.view(2, 10, 4), codes.view(2, 10, 4))
    assert torch.allclose(batched.view(20, 4), boxes, atol=1e-4)


def test_decode_hand_computed_and_clipped():
    coder = TBLRBBoxCoder(normalizer=4.0)
    assert torch.allclose(coder.decode(PRIOR, EXPECTED), BOX)
    clipped = coder.decode(PRIOR, EXPECTED, max_shape=(6, 9))  # h 6, w 9
    assert torch.allclose(clipped, torch.tensor([[1.0, 2.0, 9.0, 6.0]]))
    assert torch.allclose(TBLRBBoxCoder(clip_border=False).decode(PRIOR, EXPECTED, max_shape=(6, 9)), BOX)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="normalizer"):
        TBLRBBoxCoder(normalizer=0)
    with pytest.raises(ValueError, match="normalizer"):
        TBLRBBoxCoder(normalizer=[1.0, 2.0])
    with pytest.raises(ValueError, match="bboxes2tblr"):
        TBLRBBoxCoder().encode(PRIOR, torch.zeros(2, 4))
