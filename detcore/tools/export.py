"""Export single-stage detectors to TorchScript or ONNX (``detcore export``).

The exported graph takes the network input ``img`` ``(1, 3, H, W)`` (normalised and padded as the test
pipeline makes it) and returns either

- with post-processing: ``boxes (K, 4)`` xyxy in input-image pixels, ``scores (K,)``, ``labels (K,)``,
  the ``max_per_img`` best after class-wise NMS, computed as the head's ``topk_first`` order does (per
  level the ``nms_pre`` best anchors, decoded and clipped, then NMS per class above ``score_thr``): NMS
  is ONNX's ``NonMaxSuppression`` in an ONNX graph and a TorchScript function in a TorchScript one, so
  neither needs detcore or detcore-native to run; the priors are constants for the exported ``H x W``;
- without (``postprocess=False``): the head's raw per-level maps (``cls_score_0..``, ``bbox_pred_0..``,
  and ``score_factor_0..`` where the head has them), which ``dynamic`` lets vary in ``H x W``.

Two-stage detectors (RoI heads) are not exported yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from detcore.errors import DetcoreError


@torch.jit.script
def nms_per_class(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    score_threshold: float,
    max_per_class: int,
) -> torch.Tensor:
    """Greedy NMS of ``boxes (N, 4)`` for each class column of ``scores (N, C)`` above ``score_threshold``;
    returns ``(K, 2)`` rows ``[class, box index]`` (ONNX NonMaxSuppression's rows without the batch)."""
    selected: list[torch.Tensor] = []
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    for c in range(scores.shape[1]):
        column = scores[:, c]
        candidates = torch.nonzero(column > score_threshold).reshape(-1)
        order = candidates[torch.argsort(column[candidates], descending=True, stable=True)]
        keep: list[int] = []
        while order.numel() > 0 and (max_per_class <= 0 or len(keep) < max_per_class):
            i = int(order[0])
            keep.append(i)
            rest = order[1:]
            lt = torch.maximum(boxes[rest, :2], boxes[i, :2])
            rb = torch.minimum(boxes[rest, 2:], boxes[i, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            iou = inter / (areas[rest] + areas[i] - inter).clamp(min=1e-12)
            order = rest[iou <= iou_threshold]
        if len(keep) > 0:
            idx = torch.tensor(keep, dtype=torch.long, device=boxes.device)
            selected.append(torch.stack([torch.full_like(idx, c), idx], 1))
    if len(selected) == 0:
        return torch.zeros((0, 2), dtype=torch.long, device=boxes.device)
    return torch.cat(selected)


class _OnnxNms(torch.autograd.Function):
    """``nms_per_class`` in eager mode; ONNX ``NonMaxSuppression`` in an exported graph."""

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, iou: float, score_thr: float,
                max_per_class: int) -> torch.Tensor:  # fmt: skip
        if torch.onnx.is_in_onnx_export():  # the graph gets ``symbolic``'s node; this only gives the type
            return torch.zeros((0, 2), dtype=torch.long, device=boxes.device)
        return nms_per_class(boxes, scores, iou, score_thr, max_per_class)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou: float, score_thr: float, max_per_class: int) -> Any:
        axes = g.op("Constant", value_t=torch.tensor([0], dtype=torch.long))
        batched_boxes = g.op("Unsqueeze", boxes, axes)  # (1, N, 4)
        batched_scores = g.op("Unsqueeze", g.op("Transpose", scores, perm_i=[1, 0]), axes)  # (1, C, N)
        selected = g.op(
            "NonMaxSuppression", batched_boxes, batched_scores,
            g.op("Constant", value_t=torch.tensor([max_per_class if max_per_class > 0 else 1 << 30])),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float)),
            g.op("Constant", value_t=torch.tensor([score_thr], dtype=torch.float)),
        )  # fmt: skip  (K, 3): batch, class, box
        start = g.op("Constant", value_t=torch.tensor([1]))
        end = g.op("Constant", value_t=torch.tensor([3]))
        return g.op("Slice", selected, start, end, g.op("Constant", value_t=torch.tensor([1])))


class ExportableDetector(nn.Module):
    """A single-stage detector as a function of one input tensor (see the module docstring)."""

    def __init__(
        self, model: nn.Module, img_meta: dict, postprocess: bool = True, onnx: bool = False
    ) -> None:
        super().__init__()
        head = getattr(model, "bbox_head", None)
        if head is None or not hasattr(head, "predict_by_feat") or hasattr(model, "roi_head"):
            raise DetcoreError(
                f"export: {type(model).__name__} is not a single-stage dense-head detector; "
                "two-stage export is not implemented yet"
            )
        self.model, self.postprocess, self.onnx = model, postprocess, onnx
        self.img_meta = {**img_meta, "scale_factor": [1.0, 1.0, 1.0, 1.0]}
        cfg = dict(head.test_cfg or {})
        for key in ("score_thr", "nms", "max_per_img"):
            if key not in cfg:
                raise DetcoreError(f"export: the head's test_cfg has no {key!r}")
        self.cfg = {**cfg, "postprocess_order": "topk_first"}
        self.iou = float(cfg["nms"].get("iou_threshold", cfg["nms"].get("iou_thr", 0.5)))
        self.score_thr = float(cfg["score_thr"])
        self.max_per_img = int(cfg["max_per_img"])

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        head = self.model.bbox_head
        outs = head(self.model.extract_feat(img))
        if not self.postprocess:
            return tuple(level for maps in outs for level in maps)
        (candidates,) = head.predict_by_feat(*outs, img_metas=[self.img_meta], cfg=self.cfg, rescale=False,
                                             with_nms=False)  # fmt: skip
        boxes, scores = candidates.bboxes, candidates.scores
        factors = candidates.get("score_factors")
        if factors is not None:
            scores = scores * factors[:, None]
        if self.onnx:
            keep = _OnnxNms.apply(boxes, scores, self.iou, self.score_thr, self.max_per_img)
        else:
            keep = nms_per_class(boxes, scores, self.iou, self.score_thr, self.max_per_img)
        labels, index = keep[:, 0], keep[:, 1]
        kept_scores = scores[index, labels]
        order = torch.argsort(kept_scores, descending=True)[: self.max_per_img]
        return boxes[index[order]], kept_scores[order], labels[order]


def export(
    model: nn.Module,
    img: torch.Tensor,
    img_meta: dict,
    out_file: str | Path,
    fmt: str = "onnx",
    postprocess: bool = True,
    dynamic: bool = False,
    opset: int = 17,
) -> Path:
    """Write ``model`` traced on ``img`` to ``out_file`` as ``fmt`` (``onnx`` or ``torchscript``)."""
    if fmt not in ("onnx", "torchscript"):
        raise DetcoreError(f"export: --format must be onnx or torchscript, got {fmt!r}")
    if dynamic and postprocess:
        raise DetcoreError("export: --dynamic needs --no-postprocess (priors are fixed to the input size)")
    model.eval()
    wrapper = ExportableDetector(model, img_meta, postprocess, onnx=fmt == "onnx").eval()
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, (img,), check_trace=False, strict=False)
            traced.save(str(out))
            return out
        count = 3 if postprocess else len(wrapper(img))
        names = ["boxes", "scores", "labels"] if postprocess else [f"map_{i}" for i in range(count)]
        axes = {"img": {2: "height", 3: "width"}} if dynamic else None
        torch.onnx.export(wrapper, (img,), str(out), input_names=["img"], output_names=names,
                          dynamic_axes=axes, opset_version=opset, dynamo=False,
                          autograd_inlining=False)  # fmt: skip  (keeps _OnnxNms.symbolic)
    return out


def match_detections(
    ours: Sequence[torch.Tensor], theirs: Sequence[torch.Tensor], atol: float = 1e-2
) -> dict[str, Any]:
    """Pair two ``(boxes, scores, labels)`` sets: a detection of ``ours`` matches an unpaired one of
    ``theirs`` with the same label, box corners within ``atol`` pixels and score within ``atol / 100``
    (order-free, so near-equal scores may swap places)."""
    boxes_a, scores_a, labels_a = (torch.as_tensor(x) for x in ours)
    boxes_b, scores_b, labels_b = (torch.as_tensor(x) for x in theirs)
    free = torch.ones(len(scores_b), dtype=torch.bool)
    matched, worst = 0, 0.0
    for box, score, label in zip(boxes_a, scores_a, labels_a):
        diff = (boxes_b - box).abs().amax(1) if len(boxes_b) else boxes_b.new_zeros(0)
        ok = free & (labels_b == label) & (diff <= atol) & ((scores_b - score).abs() <= atol / 100)
        if ok.any():
            j = int(torch.nonzero(ok)[0])
            free[j] = False
            matched += 1
            worst = max(worst, float(diff[j]))
    return {"matched": matched, "counts": (len(scores_a), len(scores_b)), "max_box_diff": worst}
