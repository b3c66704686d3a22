import numpy as np
import torch

from detcore.data import GroupSampler, build_dataloader, collate
from detcore.data.samplers import DistributedGroupSampler, InfiniteGroupBatchSampler
from detcore.structures import Instances


def _sample(h, w, n=1):
    return {
        "img": torch.ones(3, h, w),
        "img_meta": {"img_id": h * 1000 + w},
        "gt_instances": Instances(bboxes=torch.zeros(n, 4), labels=torch.zeros(n, dtype=torch.long)),
        "gt_ignored_instances": Instances(bboxes=torch.zeros(0, 4)),
        "gt_semantic_seg": torch.zeros(1, h, w, dtype=torch.long),
    }


def test_collate_pads_to_largest_and_divisor():
    b = collate([_sample(10, 20), _sample(15, 12, 3), None], pad_size_divisor=8)
    assert b["imgs"].shape == (2, 3, 16, 24)
    assert (
        b["imgs"][0, :, :10, :20].eq(1).all()
        and b["imgs"][0, :, 10:].eq(0).all()
        and b["imgs"][1, :, :, 12:].eq(0).all()
    )
    assert [m["batch_input_shape"] for m in b["img_metas"]] == [(16, 24), (16, 24)]
    assert [len(g) for g in b["gt_instances"]] == [1, 3] and len(b["gt_ignored_instances"]) == 2
    assert b["gt_semantic_seg"].shape == (2, 1, 16, 24) and b["gt_semantic_seg"][0, 0, 12, 0] == 255
    aug = collate([[_sample(10, 20), _sample(20, 40)], [_sample(12, 20), _sample(24, 40)]])
    assert [t.shape for t in aug["imgs"]] == [(2, 3, 12, 20), (2, 3, 24, 40)] and len(
        aug["img_metas"][1]
    ) == 2


class _FlagDS(torch.utils.data.Dataset):
    def __init__(self, n=23):
        self.flag = (np.arange(n) % 3 == 0).astype(np.uint8)

    def __len__(self):
        return len(self.flag)

    def __getitem__(self, i):
        return i


def test_group_samplers_share_orientation_per_batch():
    ds = _FlagDS()
    s = GroupSampler(ds, samples_per_gpu=4, seed=1)
    idx = list(s)
    assert len(idx) == len(s) and set(idx) == set(range(23))
    for k in range(0, len(idx), 4):
        assert len({int(ds.flag[i]) for i in idx[k : k + 4]}) == 1
    s.set_epoch(1)
    assert list(s) != idx  # reshuffled per epoch
    parts = [list(DistributedGroupSampler(ds, 2, num_replicas=3, rank=r, seed=0)) for r in range(3)]
    assert len({len(p) for p in parts}) == 1 and set(sum(parts, [])) == set(range(23))
    for p in parts:
        for k in range(0, len(p), 2):
            assert ds.flag[p[k]] == ds.flag[p[k + 1]]
    it = iter(InfiniteGroupBatchSampler(ds, batch_size=3, seed=0))
    for _ in range(20):
        batch = next(it)
        assert len(batch) == 3 and len({int(ds.flag[i]) for i in batch}) == 1


class _RandDS(torch.utils.data.Dataset):
    flag = None

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {
            "img": torch.zeros(3, 2, 2),
            "img_meta": {"r": float(np.random.rand()), "t": float(torch.rand(1))},
        }


def test_dataloader_worker_seeding_is_reproducible():
    def draws():
        dl = build_dataloader(_RandDS(), 2, 2, shuffle=False, seed=5)
        return [(m["r"], m["t"]) for b in dl for m in b["img_metas"]]

    a, b = draws(), draws()
    assert a == b and len(set(a)) == len(a)  # reproducible, and workers draw different numbers
    dl = build_dataloader(_RandDS(), 3, 0, shuffle=True, seed=0, infinite=True, group_by_aspect_ratio=False)
    it = iter(dl)
    assert all(len(next(it)["img_metas"]) == 3 for _ in range(5))
