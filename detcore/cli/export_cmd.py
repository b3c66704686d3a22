"""``detcore export CONFIG CKPT --format onnx|torchscript``: a single-stage detector as one graph file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a single-stage detector (RetinaNet, FCOS, SSD, ...) to ONNX or TorchScript",
        description="Trace CONFIG's model with CHECKPOINT's weights on one test-pipeline input and write it "
        "as ONNX (NMS as NonMaxSuppression) or TorchScript; --verify runs the file (onnxruntime / "
        "torch.jit.load) on that input and compares its detections with detcore's.",
    )
    p.add_argument("config", help="the model's TOML config")
    p.add_argument("checkpoint", nargs="?", default=None, help="checkpoint (default: initial weights)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", default=None, help="output file (default: <config name>.onnx / .pt)")
    p.add_argument("--input-img", default=None, help="image to trace and verify on (default: random)")
    p.add_argument("--shape", type=int, nargs=2, default=[800, 1216], metavar=("H", "W"),
                   help="random input image size when no --input-img (default: 800 1216)")  # fmt: skip
    p.add_argument("--no-postprocess", action="store_true", help="export the raw head maps (no decoding/NMS)")
    p.add_argument("--dynamic", action="store_true", help="variable input H x W (with --no-postprocess)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--verify", action="store_true", help="run the exported file and compare with detcore")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from detcore.api import _sample, _test_pipeline, init_detector
    from detcore.data import collate
    from detcore.data.image_io import imread
    from detcore.errors import DetcoreError
    from detcore.tools.export import export, match_detections

    model = init_detector(args.config, args.checkpoint, cfg_options=args.overrides)
    if args.input_img:
        image = imread(args.input_img)
    else:
        image = (np.random.default_rng(0).random((args.shape[0], args.shape[1], 3)) * 255).astype(np.uint8)
    divisor = int(model.cfg.get("data.pad_size_divisor", 32))
    batch = collate([_test_pipeline(model.cfg, from_array=True)(_sample(image, 0))], pad_size_divisor=divisor)
    imgs, meta = batch["imgs"], batch["img_metas"][0]
    meta = meta[0] if isinstance(meta, list) else meta
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    out = Path(args.out or Path(args.config).stem + suffix)
    export(model, imgs, meta, out, args.format, postprocess=not args.no_postprocess, dynamic=args.dynamic,
           opset=args.opset)  # fmt: skip
    what = "raw head maps" if args.no_postprocess else "detections"
    print(f"wrote {out} (input {tuple(imgs.shape)}, {what})")
    if not args.verify:
        return 0
    if args.format == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise DetcoreError("--verify of an ONNX file needs onnxruntime (pip install it)") from None
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        exported = [torch.from_numpy(x) for x in session.run(None, {"img": imgs.numpy()})]
    else:
        with torch.no_grad():
            exported = list(torch.jit.load(str(out))(imgs))
    with torch.no_grad():
        if args.no_postprocess:
            outs = model.bbox_head(model.extract_feat(imgs))
            expected = [level for maps in outs for level in maps]
            worst = max(float((a - b).abs().max()) for a, b in zip(exported, expected))
            print(f"verify: {len(expected)} maps, largest difference {worst:.2e}")
            return 0 if worst < 1e-3 else 1
        head = model.bbox_head
        head.test_cfg = {**dict(head.test_cfg), "postprocess_order": "topk_first"}
        ref = model(imgs, [{**meta, "scale_factor": [1.0, 1.0, 1.0, 1.0]}])[0]
    report = match_detections(exported, (ref.bboxes, ref.scores, ref.labels))
    total = max(report["counts"])
    print(f"verify: {report['matched']} of {total} detections match detcore's "
          f"(exported {report['counts'][0]}, "
          f"detcore {report['counts'][1]}; largest box difference {report['max_box_diff']:.4f} px)")
    return 0 if report["matched"] == total else 1
