"""``detcore convert images2coco|voc2coco|cityscapes2coco ...``: datasets to COCO JSON."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert datasets to COCO JSON (images2coco, voc2coco, cityscapes2coco)"
    )
    sub = p.add_subparsers(dest="converter", metavar="CONVERTER", required=True)
    images = sub.add_parser("images2coco", help="a folder of images -> a test-set JSON without annotations")
    images.add_argument("img_dir", help="root folder of the images (searched recursively)")
    images.add_argument("classes", help="text file with one class name per line")
    images.add_argument("out", help="the JSON file to write")
    images.add_argument("--exclude-extensions", nargs="+", default=[], metavar="EXT", help="e.g. png bmp")
    images.set_defaults(func=run_images2coco)
    voc = sub.add_parser("voc2coco", help="a VOCdevkit -> voc07_trainval.json, voc07_test.json, ...")
    voc.add_argument("devkit", help="the VOCdevkit folder (holding VOC2007/, VOC2012/)")
    voc.add_argument("-o", "--out-dir", default=None, help="where to write (default: DEVKIT/coco_format)")
    voc.add_argument("--splits", nargs="+", default=["train", "val", "trainval", "test"])
    voc.set_defaults(func=run_voc2coco)
    city = sub.add_parser("cityscapes2coco", help="Cityscapes instance-id maps -> COCO JSON per split")
    city.add_argument("root", help="the Cityscapes folder (holding leftImg8bit/ and gtFine/)")
    city.add_argument("-o", "--out-dir", default=None, help="where to write (default: ROOT/annotations)")
    city.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    city.set_defaults(func=run_cityscapes2coco)


def run_images2coco(args: argparse.Namespace) -> int:
    from detcore.tools.convert import images2coco, read_class_list

    data = images2coco(args.img_dir, read_class_list(args.classes), args.out, args.exclude_extensions)
    print(f"wrote {args.out}: {len(data['images'])} images, {len(data['categories'])} categories")
    return 0


def run_voc2coco(args: argparse.Namespace) -> int:
    from pathlib import Path

    from detcore.tools.convert import voc2coco

    out_dir = args.out_dir or str(Path(args.devkit) / "coco_format")
    for path in voc2coco(args.devkit, out_dir, args.splits):
        print(f"wrote {path}")
    return 0


def run_cityscapes2coco(args: argparse.Namespace) -> int:
    from pathlib import Path

    from detcore.tools.convert import cityscapes2coco

    out_dir = args.out_dir or str(Path(args.root) / "annotations")
    for path in cityscapes2coco(args.root, out_dir, args.splits):
        print(f"wrote {path}")
    return 0
