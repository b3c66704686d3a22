"""Loading transforms: images, annotations and proposals into the sample dict.

Input keys (set by the dataset): ``img_info`` (``filename``, ``width``, ``height``, ``id``),
``img_prefix``, ``ann_info`` (``bboxes``, ``labels``, ``bboxes_ignore``, ``masks``, ``seg_map``),
``seg_prefix``, ``proposals``, and the empty field lists ``bbox_fields``/``mask_fields``/``seg_fields``.
"""

from __future__ import annotations

import os.path as osp
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from detcore.data.image_io import IMREAD_FLAGS, imread
from detcore.structures.masks import BitmapMasks, PolygonMasks


class LoadImageFromFile:
    """Read ``img_prefix / img_info["filename"]`` with OpenCV (see :func:`detcore.data.image_io.imread`).

    ``color_type``: ``color`` | ``grayscale`` | ``unchanged`` | ``color_ignore_orientation`` |
    ``grayscale_ignore_orientation`` (the reference's flags); ``channel_order``: ``bgr`` (default, as
    the reference) | ``rgb``. Adds ``filename``, ``ori_filename``, ``img`` (``uint8 (H, W, 3)``, or
    ``(H, W)`` for grayscale; ``float32`` with ``to_float32``), ``img_shape``, ``ori_shape``,
    ``img_fields = ["img"]``. A missing or corrupt file raises
    :class:`detcore.data.image_io.ImageReadError` (the dataset applies the bad-data policy).
    """

    def __init__(
        self, to_float32: bool = False, color_type: str = "color", channel_order: str = "bgr"
    ) -> None:
        if color_type not in IMREAD_FLAGS:
            raise ValueError(
                f"LoadImageFromFile: color_type must be one of {', '.join(IMREAD_FLAGS)}, got {color_type!r}"
            )
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(
                f"LoadImageFromFile: channel_order must be 'bgr' or 'rgb', got {channel_order!r}"
            )
        self.to_float32 = to_float32
        self.color_type = color_type
        self.channel_order = channel_order

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        name = results["img_info"]["filename"]
        prefix = results.get("img_prefix")
        filename = osp.join(prefix, name) if prefix else name
        img = imread(filename, self.color_type, self.channel_order)
        if self.to_float32:
            img = img.astype(np.float32)
        results["filename"] = filename
        results["ori_filename"] = name
        results["img"] = img
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results

    def __repr__(self) -> str:
        return (
            f"LoadImageFromFile(to_float32={self.to_float32}, color_type={self.color_type!r}, "
            f"channel_order={self.channel_order!r})"
        )


class LoadAnnotations:
    """Copy annotations from ``ann_info`` into the sample.

    Adds ``gt_bboxes`` (``float32 (N, 4)`` xyxy), ``gt_bboxes_ignore``, ``gt_labels`` (``int64 (N,)``),
    ``gt_masks`` (:class:`BitmapMasks` with ``poly2mask``, else :class:`PolygonMasks`),
    ``gt_semantic_seg`` (``uint8 (H, W)`` read from ``seg_prefix / ann_info["seg_map"]``), and the
    field lists ``bbox_fields``, ``mask_fields``, ``seg_fields``.
    """

    def __init__(
        self,
        with_bbox: bool = True,
        with_label: bool = True,
        with_mask: bool = False,
        with_seg: bool = False,
        poly2mask: bool = True,
    ) -> None:
        self.with_bbox = with_bbox
        self.with_label = with_label
        self.with_mask = with_mask
        self.with_seg = with_seg
        self.poly2mask = poly2mask

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        ann = results["ann_info"]
        for key in ("bbox_fields", "mask_fields", "seg_fields"):
            results.setdefault(key, [])
        if self.with_bbox:
            results["gt_bboxes"] = np.asarray(ann["bboxes"], dtype=np.float32).reshape(-1, 4).copy()
            results["bbox_fields"].append("gt_bboxes")
            ignore = ann.get("bboxes_ignore")
            if ignore is not None:
                results["gt_bboxes_ignore"] = np.asarray(ignore, dtype=np.float32).reshape(-1, 4).copy()
                results["bbox_fields"].append("gt_bboxes_ignore")
        if self.with_label:
            results["gt_labels"] = np.asarray(ann["labels"], dtype=np.int64).reshape(-1).copy()
        if self.with_mask:
            h, w = results["img_info"]["height"], results["img_info"]["width"]
            masks = ann.get("masks")
            if masks is None:
                raise KeyError("LoadAnnotations(with_mask=True): the dataset gives no 'masks' in ann_info")
            if self.poly2mask:
                arr = [_segm_to_bitmap(m, h, w) for m in masks]
                results["gt_masks"] = BitmapMasks(
                    np.stack(arr) if arr else np.empty((0, h, w), np.uint8), h, w
                )
            else:
                polys = []
                for i, m in enumerate(masks):
                    if not isinstance(m, list):
                        raise ValueError(
                            f"LoadAnnotations(poly2mask=False): mask {i} of "
                            f"{results['img_info'].get('filename')}"
                            " is RLE, which PolygonMasks cannot hold; use poly2mask=true"
                        )
                    polys.append(
                        [np.asarray(p, dtype=np.float64) for p in m if len(p) % 2 == 0 and len(p) >= 6]
                    )
                results["gt_masks"] = PolygonMasks(polys, h, w)
            results["mask_fields"].append("gt_masks")
        if self.with_seg:
            seg_file = ann.get("seg_map")
            if seg_file is None:
                raise KeyError("LoadAnnotations(with_seg=True): the dataset gives no 'seg_map' in ann_info")
            prefix = results.get("seg_prefix")
            path = osp.join(prefix, seg_file) if prefix else seg_file
            seg = imread(path, "unchanged")
            if seg.ndim == 3:
                seg = seg[:, :, 0]
            results["gt_semantic_seg"] = seg
            results["seg_fields"].append("gt_semantic_seg")
        return results

    def __repr__(self) -> str:
        return (
            f"LoadAnnotations(with_bbox={self.with_bbox}, with_label={self.with_label}, "
            f"with_mask={self.with_mask}, with_seg={self.with_seg}, poly2mask={self.poly2mask})"
        )


def _segm_to_bitmap(segm: Any, h: int, w: int) -> np.ndarray:
    """A COCO segmentation (polygon list, uncompressed or compressed RLE) -> ``uint8 (h, w)``."""
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return np.zeros((h, w), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_utils.frPyObjects(segm, h, w)
    elif isinstance(segm, dict):
        rle = segm
    else:
        raise ValueError(f"unknown segmentation format {type(segm).__name__}")
    return mask_utils.decode(rle).astype(np.uint8)


class LoadProposals:
    """Precomputed proposals of the sample's image into the bbox field ``proposals``.

    With ``proposal_file`` the proposals are read from that file (once, on first use): a JSON file
    (``.json``) or a weights-only torch file (``.pth``/``.pt``) holding a dict keyed by image id or by
    image file name, each value ``[[x1, y1, x2, y2(, score)], ...]`` in original-image pixels (a JSON
    dict may also wrap them: ``{"proposals": {...}}``). Pickle files are refused (unpickling runs code):
    convert one once, where you trust it, e.g.
    ``json.dump({str(img_id): boxes.tolist() for img_id, boxes in ...}, f)``. Without
    ``proposal_file`` the dataset's ``results["proposals"]`` (its ``proposal_file``) is used.

    Keeps the first ``num_max_proposals``; sets ``proposals`` (``float32 (N, 4)``) and
    ``proposal_scores`` when scores are given. A missing or unreadable file, an image the file has no
    entry for, an image with no proposals or a badly shaped entry is an error naming the image.
    """

    def __init__(self, num_max_proposals: int | None = None, proposal_file: str | None = None) -> None:
        if num_max_proposals is not None and int(num_max_proposals) <= 0:
            raise ValueError(f"LoadProposals: num_max_proposals must be > 0 or None, got {num_max_proposals}")
        self.num_max_proposals = num_max_proposals
        self.proposal_file = proposal_file
        self._table: dict[str, Any] | None = None

    # -- the proposals file ------------------------------------------------------------------------

    def _load_table(self) -> dict[str, Any]:
        path = str(self.proposal_file)
        ext = osp.splitext(path)[1].lower()
        if ext in (".pkl", ".pickle"):
            raise ValueError(
                f"LoadProposals: {path} is a pickle file, which detcore does not unpickle (it can run "
                "arbitrary code). Convert it once where you trust it to JSON keyed by image id or file "
                "name, e.g. json.dump({str(info['id']): boxes.tolist() for info, boxes in zip(img_infos, "
                "pickle.load(f))}, out), or to a weights-only torch file (torch.save of a dict of tensors)"
            )
        if not osp.isfile(path):
            raise FileNotFoundError(f"LoadProposals: proposal_file {path} does not exist")
        if ext == ".json":
            import json

            with open(path) as f:
                data = json.load(f)
        elif ext in (".pth", ".pt"):
            import torch

            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure means the file is not usable
                raise ValueError(
                    f"LoadProposals: {path} is not a weights-only torch file of tensors ({exc})"
                ) from None
        else:
            raise ValueError(
                f"LoadProposals: proposal_file {path}: unknown extension {ext!r}; use .json or .pth"
            )
        if isinstance(data, dict) and isinstance(data.get("proposals"), dict):
            data = data["proposals"]
        if not isinstance(data, dict):
            raise ValueError(
                f"LoadProposals: {path} must hold a dict keyed by image id or file name, got "
                f"{type(data).__name__}"
            )
        return {str(k): v for k, v in data.items()}

    def _from_file(self, results: dict[str, Any], where: str) -> Any:
        if self._table is None:
            self._table = self._load_table()
        info = results.get("img_info", {})
        keys = [str(info[k]) for k in ("id", "filename", "file_name") if k in info]
        if "filename" in info:
            keys.append(osp.basename(str(info["filename"])))
        for key in keys:
            if key in self._table:
                return self._table[key]
        raise ValueError(
            f"LoadProposals: {self.proposal_file} has no proposals for {where} (looked up {keys}; the file "
            f"has {len(self._table)} entries, e.g. {list(self._table)[:3]}): it does not match the dataset"
        )

    # -- transform ---------------------------------------------------------------------------------

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        info = results.get("img_info", {})
        where = f"image {info.get('id', '?')} ({info.get('filename', '?')})"
        if self.proposal_file is not None:
            raw = self._from_file(results, where)
        elif "proposals" in results and results["proposals"] is not None:
            raw = results["proposals"]
        else:
            raise ValueError(
                f"LoadProposals: no proposals for {where}: set proposal_file on LoadProposals or the dataset"
            )
        if hasattr(raw, "detach"):
            raw = raw.detach().cpu().numpy()
        proposals = np.asarray(raw, dtype=np.float32)
        if proposals.size == 0:
            raise ValueError(
                f"LoadProposals: {where} has no proposals; every image needs at least one (check that the "
                "proposals file matches the dataset)"
            )
        if proposals.ndim != 2 or proposals.shape[1] not in (4, 5):
            raise ValueError(
                f"LoadProposals: proposals of {where} must have shape (N, 4) or (N, 5), got {proposals.shape}"
            )
        if self.num_max_proposals is not None:
            proposals = proposals[: int(self.num_max_proposals)]
        if proposals.shape[1] == 5:
            results["proposal_scores"] = proposals[:, 4].copy()
        results["proposals"] = proposals[:, :4].copy()
        results.setdefault("bbox_fields", []).append("proposals")
        return results

    def __repr__(self) -> str:
        return (
            f"LoadProposals(num_max_proposals={self.num_max_proposals}, "
            f"proposal_file={self.proposal_file!r})"
        )
