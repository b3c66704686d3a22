"""One self-contained HTML page of a test run's results (``detcore report``).

The page holds, with every picture embedded as a ``data:`` URI (no server, no network, one file to
mail): the COCO box metrics, per-class AP bars, precision-recall curves at IoU 0.50 and 0.75, the
confusion matrix, the worst and best images with predictions beside ground truth, and the training
curves when a log is given. The box evaluation runs pycocotools on the ground truth of the config's
test set (any dataset type), so the figures match ``detcore test`` on a COCO set.

A small inline script marks the page's ``<body>`` with ``data-images-ok="loaded/total"`` and
``data-errors`` once loaded; browser tests read them.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detcore.tools.results import ImageResult, ImageTruth

STAT_NAMES = (
    "bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l",
    "AR@1", "AR@10", "AR@100", "AR_s@100", "AR_m@100", "AR_l@100",
)  # fmt: skip


@dataclass
class BoxEvaluation:
    """COCO box evaluation: the 12 summary figures, AP per class, ``precision[t, r, k]`` (IoU
    thresholds 0.50:0.95, 101 recall points, classes; area all, 100 detections; -1 without gt)."""

    stats: dict[str, float]
    class_ap: dict[str, float]
    precision: np.ndarray


def _coco_of(truths: Sequence[ImageTruth], classes: Sequence[str]) -> Any:
    from pycocotools.coco import COCO

    images, anns = [], []
    for index, truth in enumerate(truths):
        name = truth.filename or str(truth.img_id)
        images.append({"id": index, "file_name": name, "width": 0, "height": 0})
        for boxes, labels, crowd in ((truth.bboxes, truth.labels, 0), (truth.bboxes_ignore, None, 1)):
            for j, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
                label = int(labels[j]) if labels is not None else -1
                w, h = x2 - x1, y2 - y1
                for cat in ([label] if label >= 0 else range(len(classes))):  # crowd boxes ignore all classes
                    anns.append({"id": len(anns) + 1, "image_id": index, "category_id": cat + 1,
                                 "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": crowd})  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate_boxes(
    pairs: Sequence[tuple[ImageResult, ImageTruth]], classes: Sequence[str]
) -> BoxEvaluation:
    """COCO box AP of the paired results (pycocotools on an in-memory copy of the ground truth)."""
    from pycocotools.cocoeval import COCOeval

    gt = _coco_of([truth for _, truth in pairs], classes)
    dets = []
    for index, (result, _) in enumerate(pairs):
        boxes, scores = result.bboxes.tolist(), result.scores.tolist()
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, result.labels):
            dets.append({"image_id": index, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": score})  # fmt: skip
    num_t, num_k = 10, len(classes)
    if not dets:
        return BoxEvaluation(dict.fromkeys(STAT_NAMES, 0.0), dict.fromkeys(classes, 0.0),
                             np.zeros((num_t, 101, num_k)))  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # area all, maxDets 100
    class_ap = {}
    for k, name in enumerate(classes):
        p = precision[:, :, k]
        class_ap[name] = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
    return BoxEvaluation(dict(zip(STAT_NAMES, (float(x) for x in ev.stats))), class_ap, precision)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _jpeg(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_ap_figure(class_ap: dict[str, float]) -> Any:
    plt = _plt()
    names = list(class_ap)
    values = [0.0 if np.isnan(v) else v for v in class_ap.values()]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(names, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v + 0.01, y, f"{v:.3f}", va="center", fontsize=8)
    ax.set(xlim=(0, 1.1), xlabel="AP (IoU 0.50:0.95)", title="AP per class")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def pr_figure(precision: np.ndarray, classes: Sequence[str]) -> Any:
    plt = _plt()
    recall = np.linspace(0, 1, 101)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, t, iou in ((axes[0], 0, "0.50"), (axes[1], 5, "0.75")):
        for k, name in enumerate(classes):
            p = precision[t, :, k]
            if (p > -1).all():
                ax.plot(recall, p, lw=1, label=name)
        valid = precision[t][:, (precision[t] > -1).all(0)]
        if valid.size:
            ax.plot(recall, valid.mean(1), color="black", lw=2, label="mean")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", title=f"IoU {iou}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _picture(heading: str, fig: Any) -> str:
    """A section with a heading (HTML) and one matplotlib figure, embedded as PNG."""
    alt = html.escape(html.unescape(heading), quote=True)
    return f'<section><h2>{heading}</h2><img alt="{alt}" src="{_png(fig)}"></section>'


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#1f3b57;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8;font-size:13px}main{padding:12px 28px 40px;max-width:1200px}
section{background:#fff;border-radius:8px;padding:14px 18px;margin:14px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 10px}table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #e3e5e8;padding:4px 12px;text-align:right}th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#eef3f8;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:20px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:10px}
figure{margin:0}figcaption{font-size:12px;color:#555}
"""

SCRIPT = """
window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message||e))},true);
window.addEventListener('load',function(){var imgs=document.images,ok=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok+'/'+imgs.length);
document.body.setAttribute('data-errors',String(window.__errors.length));});
"""


def build_report(
    title: str,
    pairs: Sequence[tuple[ImageResult, ImageTruth]],
    classes: Sequence[str],
    image_files: dict[Any, Path | None],
    logs: Sequence[str | Path] = (),
    topk: int = 6,
    score_thr: float = 0.3,
) -> str:
    """The whole page as one HTML string (see the module docstring)."""
    from detcore.tools.analyze_results import comparison_image, rank_images
    from detcore.tools.confusion_matrix import confusion_matrix, confusion_matrix_figure

    evaluation = evaluate_boxes(pairs, classes)
    s = evaluation.stats
    num_dets = sum(len(r.scores) for r, _ in pairs)
    num_gts = sum(len(t.labels) for _, t in pairs)
    cards = "".join(
        f'<div class="card">{label}<b>{value}</b></div>'
        for label, value in (("bbox mAP", f"{s['bbox_mAP']:.3f}"), ("AP50", f"{s['bbox_mAP_50']:.3f}"),
                             ("AP75", f"{s['bbox_mAP_75']:.3f}"), ("images", str(len(pairs))),
                             ("ground-truth boxes", str(num_gts)), ("detections", str(num_dets)))
    )  # fmt: skip
    shown = [(name, f"{value:.3f}" if value >= 0 else "n/a (no such box)") for name, value in s.items()]
    metrics = _table(shown, ("metric", "value"))
    sections = [f'<section><h2>Summary</h2><div class="cards">{cards}</div></section>',
                f"<section><h2>COCO box metrics</h2>{metrics}</section>"]  # fmt: skip
    matrix = confusion_matrix(pairs, len(classes), score_thr=score_thr)
    sections += [
        _picture("AP per class", class_ap_figure(evaluation.class_ap)),
        _picture("Precision-recall", pr_figure(evaluation.precision, classes)),
        _picture(
            f"Confusion matrix (score &ge; {score_thr:g}, IoU &ge; 0.5)",
            confusion_matrix_figure(matrix, classes),
        ),
    ]
    ranked = rank_images(pairs, len(classes))
    by_id = {r.img_id: (r, t) for r, t in pairs}
    k = min(topk, len(ranked))
    for heading, chosen in (("Worst images", ranked[::-1][:k]), ("Best images", ranked[:k])):
        figures = []
        for score in chosen:
            result, truth = by_id[score.img_id]
            path = image_files.get(score.img_id)
            if path is None:
                continue
            picture = comparison_image(str(path), result, truth, classes, score_thr)
            caption = f"{html.escape(Path(path).name)}: AP {score.ap:.3f}"
            figures.append(
                f'<figure><img alt="image {html.escape(str(score.img_id))}" src="{_jpeg(picture)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        if figures:
            grid = f'<div class="grid">{"".join(figures)}</div>'
            sections.append(f"<section><h2>{heading} (ground truth | predictions)</h2>{grid}</section>")
    if logs:
        sections.append(_training_section(logs))
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>detcore results report &middot; {len(pairs)} images "
        f"&middot; {stamp}</p></header><main>{''.join(sections)}</main></body></html>"
    )


def _training_section(logs: Sequence[str | Path]) -> str:
    from detcore.tools.analyze_logs import load_json_log, series

    plt = _plt()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    for log in logs:
        records = load_json_log(log)
        tag = Path(log).name if len(logs) > 1 else ""
        keys = sorted({k for r in records if r.get("mode") == "train" for k in r if k.startswith("loss")})
        for key in keys:
            xs, ys = series(records, "train", key)
            ax_loss.plot(xs, ys, lw=1, label=f"{tag} {key}".strip())
        val_keys = sorted({k for r in records if r.get("mode") == "val" for k in r if k.endswith("mAP")})
        for key in val_keys:
            xs, ys = series(records, "val", key)
            ax_val.plot(xs, ys, marker="o", label=f"{tag} {key}".strip())
    ax_loss.set(xlabel="iteration", title="training losses")
    ax_val.set(xlabel="iteration", title="validation")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _picture("Training curves", fig)
