"""Inference on images, folders and videos: pictures of the detections plus a COCO-style JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from detcore.data.bad_data import BadDataReporter, report_bad_data
from detcore.errors import DetcoreError
from detcore.structures import Instances
from detcore.visualization import show_result

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def collect_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split ``inputs`` into image files and video files; folders are searched (sorted, not recursive)."""
    images, videos = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DetcoreError(f"{item}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            images.extend(files)
        elif not item.exists():
            raise DetcoreError(f"{item}: no such file or folder")
        elif item.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(item)
        elif item.suffix.lower() in IMAGE_SUFFIXES:
            images.append(item)
        else:
            raise DetcoreError(f"{item}: not an image or video (suffix '{item.suffix}')")
    return images, videos


def instances_to_coco(instances: Instances, image_id: int, score_thr: float = 0.0) -> list[dict[str, Any]]:
    """COCO result entries (``bbox`` as ``[x, y, w, h]``, ``category_id`` = contiguous label + 1)."""
    out = []
    boxes = instances.bboxes.detach().cpu().numpy()
    scores = instances.scores.detach().cpu().numpy()
    labels = instances.labels.detach().cpu().numpy()
    masks = instances.get("masks")
    for i in np.flatnonzero(scores >= score_thr):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        entry = {
            "image_id": image_id,
            "category_id": int(labels[i]) + 1,
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "score": round(float(scores[i]), 4),
        }
        if masks is not None:
            from pycocotools import mask as mask_utils

            m = np.asfortranarray(masks[i].detach().cpu().numpy().astype(np.uint8))
            rle = mask_utils.encode(m)
            entry["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        out.append(entry)
    return out


def run_inference(
    model: Any,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    score_thr: float = 0.3,
    batch_size: int = 4,
) -> dict[str, Any]:
    """Detect objects in every input, draw them into ``out_dir`` and write ``out_dir/detections.json``."""
    from detcore.api import inference_detector

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, videos = collect_inputs(inputs)
    class_names = list(getattr(model, "CLASSES", None) or [])
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    pictures = []
    numbered = _readable(list(enumerate(images, 1)), reporter := BadDataReporter("infer"))
    for start in range(0, len(numbered), batch_size):
        chunk = [path for _, path in numbered[start : start + batch_size]]
        results = inference_detector(model, [str(p) for p in chunk])
        for (image_id, path), result in zip(numbered[start : start + batch_size], results):
            drawn = show_result(
                path, result, class_names, score_thr=score_thr, out_file=out_dir / f"{path.stem}.png"
            )
            height, width = drawn.shape[:2]
            coco["images"].append({"id": image_id, "file_name": str(path), "width": width, "height": height})
            coco["annotations"].extend(instances_to_coco(result, image_id, score_thr))
            pictures.append(out_dir / f"{path.stem}.png")
    for video in videos:
        pictures.append(_infer_video(model, video, out_dir, class_names, score_thr))
    for i, ann in enumerate(coco["annotations"], 1):
        ann["id"] = i
    json_path = out_dir / "detections.json"
    json_path.write_text(json.dumps(coco))
    bad = report_bad_data([reporter], "infer", out_dir)
    return {
        "pictures": pictures, "json": json_path, "num_detections": len(coco["annotations"]), "bad_data": bad,
        "bad_data_file": out_dir / "bad_data_infer.json" if bad else None,
    }


def _readable(numbered: list[tuple[int, Path]], reporter: BadDataReporter) -> list[tuple[int, Path]]:
    """The inputs that decode; each other one is reported (image id = its place in the inputs, 1-based)."""
    from detcore.data.image_io import ImageReadError, imread

    out = []
    for image_id, path in numbered:
        try:
            imread(str(path))
        except ImageReadError as exc:
            reporter.record("corrupt_image", image_id, str(path), str(exc))
            continue
        out.append((image_id, path))
    return out


def _infer_video(model: Any, video: Path, out_dir: Path, class_names: list[str], score_thr: float) -> Path:
    try:
        import cv2
    except ImportError:
        raise DetcoreError(
            f"{video}: reading videos needs OpenCV (pip install opencv-python-headless)"
        ) from None
    from detcore.api import inference_detector

    reader = cv2.VideoCapture(str(video))
    if not reader.isOpened():
        raise DetcoreError(f"{video}: OpenCV cannot open this video")
    fps = reader.get(cv2.CAP_PROP_FPS) or 25.0
    out_path = out_dir / f"{video.stem}.mp4"
    writer = None
    for frame in _frames(reader):
        result = inference_detector(model, frame)
        drawn = show_result(frame, result, class_names, score_thr=score_thr)
        if writer is None:
            height, width = drawn.shape[:2]
            writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        writer.write(drawn[:, :, ::-1])
    reader.release()
    if writer is not None:
        writer.release()
    return out_path


def _frames(reader: Any) -> Iterable[np.ndarray]:
    while True:
        ok, frame = reader.read()
        if not ok:
            return
        yield frame
