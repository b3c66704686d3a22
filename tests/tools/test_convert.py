"""detcore convert: images2coco on a folder of written images, voc2coco on a hand-written VOC devkit."""

import json

import numpy as np
import pytest


def test_images2coco_lists_every_image_with_its_size(tmp_path, capsys):
    import cv2

    from detcore.cli.main import main

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "imgs" / "a.jpg"), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "imgs" / "sub" / "b.png"), np.zeros((50, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "imgs" / "c.bmp"), np.zeros((5, 5, 3), np.uint8))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "classes.txt").write_text("cat\n\n dog \n")
    out = tmp_path / "test.json"
    assert main(["convert", "images2coco", str(tmp_path / "imgs"), str(tmp_path / "classes.txt"), str(out),
                 "--exclude-extensions", "bmp"]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    listed = [(i["file_name"], i["width"], i["height"]) for i in data["images"]]
    assert listed == [("a.jpg", 40, 30), ("sub/b.png", 20, 50)]
    assert data["annotations"] == [] and [c["name"] for c in data["categories"]] == ["cat", "dog"]
    from pycocotools.coco import COCO

    assert len(COCO(str(out)).getImgIds()) == 2  # a valid COCO file
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    assert main(["convert", "images2coco", str(tmp_path / "imgs"), str(tmp_path / "dup.txt"), str(out)]) == 1
    assert "'cat' is listed twice" in capsys.readouterr().err
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    args = ["convert", "images2coco", str(tmp_path / "imgs"), str(tmp_path / "classes.txt"), str(out)]
    assert main(args) == 1
    assert "broken.jpg: not a readable image" in capsys.readouterr().err


VOC_XML = """<annotation><size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>
</annotation>"""


def test_voc2coco_boxes_and_difficult_objects(tmp_path):
    from detcore.tools.convert import voc2coco

    year = tmp_path / "VOCdevkit" / "VOC2007"
    (year / "ImageSets" / "Main").mkdir(parents=True)
    (year / "Annotations").mkdir()
    (year / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (year / "Annotations" / "000001.xml").write_text(VOC_XML)
    (year / "JPEGImages").mkdir()
    import cv2

    cv2.imwrite(str(year / "JPEGImages" / "000001.jpg"), np.zeros((80, 100, 3), np.uint8))
    written = voc2coco(tmp_path / "VOCdevkit", tmp_path / "out")
    assert [p.name for p in written] == ["voc07_test.json"]
    data = json.loads(written[0].read_text())
    assert data["images"] == [{"id": 0, "file_name": "JPEGImages/000001.jpg", "width": 100, "height": 80,
                               "voc_id": "000001"}]  # fmt: skip
    names = [c["name"] for c in data["categories"]]
    dog, cat = (a for a in data["annotations"])
    # VOC pixels 11..40 (1-based, inclusive) are 0-based 10..39: 30 pixels wide
    assert dog["bbox"] == [10, 20, 30, 40] and dog["area"] == 1200 and dog["iscrowd"] == 0
    assert names[dog["category_id"] - 1] == "dog"
    assert cat["iscrowd"] == 1 and names[cat["category_id"] - 1] == "cat"  # difficult -> ignored
    with pytest.raises(Exception, match="no VOC<year>/ImageSets/Main"):
        voc2coco(tmp_path, tmp_path / "out")


def test_cityscapes2coco_from_instance_id_maps(tmp_path, capsys):
    import cv2

    from detcore.cli.main import main

    ids = np.zeros((40, 60), np.uint16)
    ids[:, :] = 7  # road: not an instance class
    ids[5:15, 10:30] = 26001  # car instance 1: 20 x 10 pixels
    ids[20:30, 5:10] = 24001  # person instance 1
    ids[20:25, 40:50] = 26  # a group of cars: crowd
    city = tmp_path / "cityscapes"
    (city / "gtFine" / "val" / "aachen").mkdir(parents=True)
    (city / "leftImg8bit" / "val" / "aachen").mkdir(parents=True)
    ids_file = city / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_instanceIds.png"
    assert cv2.imwrite(str(ids_file), ids)
    assert main(["convert", "cityscapes2coco", str(city), "--splits", "val"]) == 0
    data = json.loads((city / "annotations" / "instancesonly_filtered_gtFine_val.json").read_text())
    assert data["images"][0]["file_name"] == "aachen/aachen_000000_000019_leftImg8bit.png"
    names = {c["id"]: c["name"] for c in data["categories"]}
    anns = {(names[a["category_id"]], a["iscrowd"]): a for a in data["annotations"]}
    assert set(anns) == {("car", 0), ("person", 0), ("car", 1)}
    assert anns[("car", 0)]["bbox"] == [10, 5, 20, 10] and anns[("car", 0)]["area"] == 200
    assert anns[("person", 0)]["bbox"] == [5, 20, 5, 10]
    assert anns[("car", 1)]["area"] == 50
    from pycocotools import mask as mask_utils

    rle = mask_utils.frPyObjects(anns[("car", 0)]["segmentation"], 40, 60)
    assert abs(int(mask_utils.area(mask_utils.merge(rle))) - 200) <= 30  # polygon through the pixel centres
    assert "wrote" in capsys.readouterr().out
