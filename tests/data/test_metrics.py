import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detcore.evaluation import CocoMetric, VOCMetric, average_precision, eval_map
from detcore.structures import Instances


def _gt_file(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in (1, 2)]
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "category_id": 3,
            "bbox": [10, 10, 40, 30],
            "area": 1200,
            "iscrowd": 0,
            "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]],
        },
        {
            "id": 2,
            "image_id": 1,
            "category_id": 7,
            "bbox": [60, 20, 30, 50],
            "area": 1500,
            "iscrowd": 0,
            "segmentation": [[60, 20, 90, 20, 90, 70, 60, 70]],
        },
        {
            "id": 3,
            "image_id": 2,
            "category_id": 3,
            "bbox": [5, 5, 20, 20],
            "area": 400,
            "iscrowd": 0,
            "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]],
        },
    ]
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return str(path), data


def _preds(data, shift=0.0):
    by_img = {}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        by_img.setdefault(a["image_id"], []).append(
            ([x + shift, y, x + w + shift, y + h], {3: 0, 7: 1}[a["category_id"]])
        )
    out = []
    for img_id in (1, 2):
        boxes = torch.tensor([b for b, _ in by_img[img_id]], dtype=torch.float32)
        labels = torch.tensor([lab for _, lab in by_img[img_id]])
        masks = torch.zeros(len(boxes), 80, 100, dtype=torch.bool)
        for k, b in enumerate(boxes.long().tolist()):
            masks[k, b[1] : b[3], b[0] : b[2]] = True
        out.append(
            (
                {"img_id": img_id},
                Instances(
                    bboxes=boxes, scores=torch.linspace(0.9, 0.8, len(boxes)), labels=labels, masks=masks
                ),
            )
        )
    return out


def test_perfect_detections_give_one(tmp_path):
    path, data = _gt_file(tmp_path)
    m = CocoMetric(
        ann_file=path,
        metric=["bbox", "segm", "proposal"],
        classwise=True,
        outfile_prefix=str(tmp_path / "res"),
    )
    for meta, pred in _preds(data):
        m.process([meta], [pred])
    r = m.compute(m.results)
    assert r["bbox_mAP"] == pytest.approx(1.0) and r["bbox_mAP_50"] == pytest.approx(1.0)
    assert r["segm_mAP"] == pytest.approx(1.0) and r["AR@100"] == pytest.approx(1.0)
    assert r["bbox_AP_a"] == pytest.approx(1.0) and r["bbox_AP_b"] == pytest.approx(1.0)
    written = json.load(open(tmp_path / "res.bbox.json"))
    assert {d["category_id"] for d in written} == {3, 7} and written[0]["bbox"] == [10.0, 10.0, 40.0, 30.0]


def test_shifted_boxes_match_cocoeval_called_directly(tmp_path):
    path, data = _gt_file(tmp_path)
    m = CocoMetric(ann_file=path, metric="bbox")
    preds = _preds(data, shift=6.0)
    for meta, pred in preds:
        m.process([meta], [pred])
    ours = m.compute(m.results)
    dets = []
    for meta, pred in preds:
        for b, s, lab in zip(pred.bboxes.tolist(), pred.scores.tolist(), pred.labels.tolist()):
            dets.append(
                {
                    "image_id": meta["img_id"],
                    "category_id": [3, 7][lab],
                    "score": s,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(path)
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0 < ours["bbox_mAP"] < 1
    for k, name in enumerate(["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"]):
        assert ours[f"bbox_{name}"] == pytest.approx(ev.stats[k])


def test_mask_scores_rank_the_segm_results_only(tmp_path):
    """``mask_scores`` (Mask Scoring R-CNN) score the segm results; the bbox results keep ``scores``. A
    false positive of class a in image 1 ranked first by ``scores`` costs bbox AP; ranked last by
    ``mask_scores`` it costs no segm AP (class a has all its true positives above it)."""
    path, data = _gt_file(tmp_path)
    m = CocoMetric(ann_file=path, metric=["bbox", "segm"], outfile_prefix=str(tmp_path / "res"))
    for meta, pred in _preds(data):
        if meta["img_id"] == 1:
            fp_mask = torch.zeros(1, 80, 100, dtype=torch.bool)
            fp_mask[0, 50:75, 5:30] = True
            pred = Instances(
                bboxes=torch.cat([pred.bboxes, torch.tensor([[5.0, 50.0, 30.0, 75.0]])]),
                scores=torch.cat([pred.scores, torch.tensor([0.95])]),
                labels=torch.cat([pred.labels, torch.tensor([0])]),
                masks=torch.cat([pred.masks, fp_mask]),
            )
        pred.mask_scores = pred.scores.clone()
        pred.mask_scores[pred.scores > 0.92] = 0.1  # the false positive ranks last among the masks
        m.process([meta], [pred])
    r = m.compute(m.results)
    assert r["segm_mAP"] == pytest.approx(1.0)
    assert r["bbox_mAP"] < 0.9
    segm = json.load(open(tmp_path / "res.segm.json"))
    bbox = json.load(open(tmp_path / "res.bbox.json"))
    assert sorted(d["score"] for d in segm)[0] == pytest.approx(0.1)
    assert max(d["score"] for d in bbox) == pytest.approx(0.95)


def test_average_precision_modes():
    # two gts, detections TP, FP, TP: recall [.5, .5, 1], precision [1, .5, 2/3]
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(rec, prec, "area") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(rec, prec, "11points") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_eval_map_hand_computed_with_difficult():
    ann = {
        "bboxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        "labels": np.array([0, 0]),
        "bboxes_ignore": np.array([[40, 40, 50, 50]], np.float32),
        "labels_ignore": np.array([0]),
    }
    dets = [
        [
            np.array(
                [
                    [0, 0, 10, 10, 0.9],  # TP
                    [40, 40, 50, 50, 0.85],  # matches a difficult gt: ignored
                    [60, 60, 70, 70, 0.8],  # FP
                    [21, 21, 30, 30, 0.7],  # TP (IoU 0.81)
                    [0, 0, 10, 10, 0.6],
                ]
            )
        ]
    ]  # duplicate: FP
    mean_ap, per_class = eval_map(dets, [ann], iou_thr=0.5)
    # ranked TP, FP, TP, FP -> recall .5 .5 1 1, precision 1 .5 .667 .5 -> AP = .5 + .5 * 2/3
    assert mean_ap == pytest.approx(0.5 + 0.5 * 2 / 3) and per_class[0]["num_gts"] == 2


class _VOCLike:
    CLASSES = ("a", "b")
    img_ids = ["x"]

    def get_ann_info(self, idx):
        return {
            "bboxes": np.array([[0, 0, 10, 10]], np.float32),
            "labels": np.array([1]),
            "bboxes_ignore": np.zeros((0, 4), np.float32),
            "labels_ignore": np.zeros(0, np.int64),
        }


def test_voc_metric():
    m = VOCMetric(dataset=_VOCLike(), eval_mode="11points")
    m.process(
        [{"img_id": "x"}],
        [
            Instances(
                bboxes=torch.tensor([[0.0, 0, 10, 10]]), scores=torch.tensor([0.5]), labels=torch.tensor([1])
            )
        ],
    )
    r = m.compute(m.results)
    assert r["mAP"] == pytest.approx(1.0) and r["AP_b"] == pytest.approx(1.0) and r["AP_a"] == 0.0
