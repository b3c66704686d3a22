import json
import os

import numpy as np
import pytest

from detcore.data import build_dataset
from detcore.data.datasets import (
    ClassBalancedDataset,
    CocoDataset,
    ConcatDataset,
    CustomDataset,
    RepeatDataset,
    VOCDataset,
)
from detcore.data.image_io import imwrite
from detcore.data.shapes import generate_shapes

PIPE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True, with_seg=True),
    dict(type="PackDetInputs"),
]


def test_shapes_round_trip_through_coco(shapes_paths):
    ds = CocoDataset(
        shapes_paths["train_ann"],
        PIPE,
        img_prefix=shapes_paths["train_img"],
        seg_prefix=shapes_paths["train_seg"],
    )
    assert ds.CLASSES == ("square", "circle", "triangle") and ds.cat2label == {1: 0, 2: 1, 3: 2}
    raw = json.load(open(shapes_paths["train_ann"]))
    assert len(ds) == len(raw["images"]) == 12 and ds.bad_data_summary() == {}
    for idx in range(3):
        s = ds[idx]
        img_id = s["img_meta"]["img_id"]
        anns = [a for a in raw["annotations"] if a["image_id"] == img_id]
        boxes = np.array(
            [
                [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                for a in anns
            ]
        )
        np.testing.assert_allclose(s["gt_instances"].bboxes.numpy(), boxes, atol=1e-4)
        assert s["gt_instances"].labels.tolist() == [a["category_id"] - 1 for a in anns]
        masks = s["gt_instances"].masks
        np.testing.assert_allclose(masks.areas, [a["area"] for a in anns], rtol=0.15)
        seg = s["gt_semantic_seg"][0].numpy()
        for m, lab in zip(masks.masks, s["gt_instances"].labels.tolist()):
            assert (seg[m.astype(bool)] == lab + 1).mean() > 0.9
        # shapes are visible: the mean colour inside a mask differs from the surrounding box
    # cached: a second call returns immediately without rewriting
    mtime = os.path.getmtime(shapes_paths["train_ann"])
    again = generate_shapes(
        shapes_paths["root"], num_train=12, num_val=6, seed=3, image_size=(96, 128), min_size=16, max_size=40
    )
    assert again == shapes_paths and os.path.getmtime(shapes_paths["train_ann"]) == mtime


def test_shapes_dataset_registered_and_classes_subset(shapes_paths, tmp_path):
    ds = build_dataset(
        dict(
            type="ShapesDataset",
            split="val",
            root=str(tmp_path / "s"),
            num_images=4,
            image_size=[64, 64],
            pipeline=PIPE[:2] + [PIPE[2]],
            classes=["circle"],
            test_mode=True,
        )
    )
    assert ds.CLASSES == ("circle",) and ds.cat_ids == [2] and len(ds) == 4
    for i in range(len(ds)):
        assert set(ds.get_ann_info(i)["labels"].tolist()) <= {0}


def _write_middle(tmp_path):
    for name, (h, w) in {"a.png": (20, 30), "b.png": (30, 20)}.items():
        imwrite(np.zeros((h, w, 3), np.uint8), str(tmp_path / name))
    data = {
        "classes": ["cat", "dog"],
        "images": [
            {
                "filename": "a.png",
                "width": 30,
                "height": 20,
                "ann": {
                    "bboxes": [[1, 1, 10, 10], [2, 2, 8, 9]],
                    "labels": [0, 1],
                    "bboxes_ignore": [[0, 0, 3, 3]],
                },
            },
            {
                "filename": "b.png",
                "width": 20,
                "height": 30,
                "ann": {"bboxes": [[0, 0, 5, 5]], "labels": [1]},
            },
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return str(tmp_path / "ann.json")


def test_middle_format_and_wrappers(tmp_path):
    ann = _write_middle(tmp_path)
    ds = CustomDataset(
        ann,
        PIPE[:2] + [PIPE[2]]
        if False
        else [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackDetInputs")],
        img_prefix=str(tmp_path),
    )
    assert ds.CLASSES == ("cat", "dog") and ds.flag.tolist() == [1, 0]
    s = ds[0]
    assert s["gt_instances"].labels.tolist() == [0, 1] and s["gt_ignored_instances"].bboxes.shape == (1, 4)
    sub = CustomDataset(ann, [], classes=["dog"], img_prefix=str(tmp_path))
    assert sub.get_ann_info(0)["labels"].tolist() == [0] and len(sub) == 2
    cat = build_dataset([dict(type="CustomDataset", ann_file=ann, img_prefix=str(tmp_path))] * 2)
    assert isinstance(cat, ConcatDataset) and len(cat) == 4 and cat.flag.tolist() == [1, 0, 1, 0]
    rep = RepeatDataset(dict(type="CustomDataset", ann_file=ann, img_prefix=str(tmp_path)), times=3)
    assert len(rep) == 6 and rep.get_cat_ids(3) == [1]
    # class-balanced: "cat" is in 1 of 2 images (f = 0.5), "dog" in 2 (f = 1); thr 1 -> r(cat) = sqrt(2)
    cb = ClassBalancedDataset(ds, oversample_thr=1.0)
    np.testing.assert_allclose(cb.repeat_factors, [np.sqrt(2), 1.0])
    assert cb.repeat_indices == [0, 0, 1] and len(cb.flag) == 3


def test_voc_xml(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    imwrite(np.zeros((50, 60, 3), np.uint8), str(root / "JPEGImages" / "000001.jpg"))
    (root / "Annotations" / "000001.xml").write_text(
        "<annotation><size><width>60</width><height>50</height></size>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax>"
        "<ymax>40</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "test.txt").write_text("000001\n")
    ds = VOCDataset(str(tmp_path / "test.txt"), [], img_prefix=str(root))
    ann = ds.get_ann_info(0)
    np.testing.assert_allclose(ann["bboxes"], [[10, 5, 29, 39]])
    assert ann["labels"].tolist() == [VOCDataset.CLASSES.index("dog")]
    np.testing.assert_allclose(ann["bboxes_ignore"], [[0, 0, 8, 8]])
    assert ds.img_ids == ["000001"] and ds.data_infos[0]["width"] == 60


def test_unknown_class_name_is_an_error(shapes_paths):
    with pytest.raises(ValueError, match="hexagon"):
        CocoDataset(shapes_paths["val_ann"], [], classes=["hexagon"], img_prefix=shapes_paths["val_img"])
