"""LoadProposals: proposals files (JSON, weights-only torch) keyed by image id or file name, the errors
for missing / mismatched files and images without proposals, pickles refused, and the bbox field that
the geometric transforms move and PackDetInputs packs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detcore.data.transforms import PackDetInputs, Resize
from detcore.data.transforms.loading import LoadProposals

BOXES = [[1.0, 2.0, 11.0, 12.0, 0.9], [5.0, 5.0, 25.0, 15.0, 0.4], [0.0, 0.0, 4.0, 4.0, 0.1]]


def sample(img_id=7, filename="imgs/a.jpg", h=20, w=30) -> dict:
    return {
        "img_info": {"id": img_id, "filename": filename},
        "img": np.zeros((h, w, 3), np.uint8),
        "img_shape": (h, w, 3),
        "ori_shape": (h, w, 3),
        "img_fields": ["img"],
        "bbox_fields": [],
    }


def write_json(path, table) -> str:
    path.write_text(json.dumps(table))
    return str(path)


def test_json_keyed_by_image_id_or_file_name(tmp_path):
    by_id = write_json(tmp_path / "p.json", {"7": BOXES})
    out = LoadProposals(proposal_file=by_id)(sample())
    np.testing.assert_array_equal(out["proposals"], np.array(BOXES, np.float32)[:, :4])
    np.testing.assert_array_equal(out["proposal_scores"], np.array([0.9, 0.4, 0.1], np.float32))
    assert "proposals" in out["bbox_fields"]
    by_name = write_json(tmp_path / "q.json", {"proposals": {"a.jpg": [b[:4] for b in BOXES]}})
    out = LoadProposals(num_max_proposals=2, proposal_file=by_name)(sample())
    assert out["proposals"].shape == (2, 4) and "proposal_scores" not in out


def test_weights_only_torch_file(tmp_path):
    path = tmp_path / "p.pth"
    torch.save({"imgs/a.jpg": torch.tensor(BOXES)}, path)
    out = LoadProposals(proposal_file=str(path))(sample())
    np.testing.assert_allclose(out["proposals"], np.array(BOXES, np.float32)[:, :4])


def test_pickle_files_are_refused_with_how_to_convert(tmp_path):
    path = tmp_path / "rpn_proposals.pkl"
    path.write_bytes(b"not even read")
    with pytest.raises(ValueError, match="pickle") as err:
        LoadProposals(proposal_file=str(path))(sample())
    assert "JSON" in str(err.value) and "torch" in str(err.value)


def test_missing_file_and_mismatched_file_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        LoadProposals(proposal_file=str(tmp_path / "nowhere.json"))(sample())
    other = write_json(tmp_path / "other.json", {"1": BOXES, "2": BOXES})
    with pytest.raises(ValueError, match=r"image 7 \(imgs/a.jpg\)") as err:
        LoadProposals(proposal_file=other)(sample())
    assert "does not match" in str(err.value)
    with pytest.raises(ValueError, match="dict keyed by image id"):
        LoadProposals(proposal_file=write_json(tmp_path / "list.json", [BOXES]))(sample())


def test_an_image_without_proposals_or_with_bad_ones_is_an_error_naming_it(tmp_path):
    empty = write_json(tmp_path / "e.json", {"7": []})
    with pytest.raises(ValueError, match=r"image 7 \(imgs/a.jpg\) has no proposals"):
        LoadProposals(proposal_file=empty)(sample())
    bad = write_json(tmp_path / "b.json", {"7": [[1, 2, 3]]})
    with pytest.raises(ValueError, match=r"image 7 .*\(N, 4\) or \(N, 5\)"):
        LoadProposals(proposal_file=bad)(sample())
    # without a file, the dataset must have supplied them
    with pytest.raises(ValueError, match=r"no proposals for image 7"):
        LoadProposals()(sample())
    s = sample()
    s["proposals"] = np.array(BOXES)
    assert LoadProposals()(s)["proposals"].shape == (3, 4)


def test_proposals_follow_resize_and_are_packed(tmp_path):
    path = write_json(tmp_path / "p.json", {"7": BOXES})
    s = LoadProposals(proposal_file=path)(sample(h=20, w=30))
    s = Resize(img_scale=(60, 40), keep_ratio=True)(s)  # 2x
    np.testing.assert_allclose(s["proposals"], np.array(BOXES, np.float32)[:, :4] * 2)
    packed = PackDetInputs()(s)
    props = packed["proposals"]
    torch.testing.assert_close(props.bboxes, torch.tensor(BOXES)[:, :4] * 2)
    torch.testing.assert_close(props.scores, torch.tensor([0.9, 0.4, 0.1]))
