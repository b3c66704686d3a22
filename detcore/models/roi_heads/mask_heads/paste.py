"""Pasting RoI masks into the image: each ``(M, M)`` mask is stretched over its box by bilinear sampling.

The sampling follows the reference exactly: image pixel ``(x, y)`` reads the mask at the normalised
coordinates ``((x + 0.5 - x0) / (x1 - x0) * 2 - 1, (y + 0.5 - y0) / (y1 - y0) * 2 - 1)`` with
``grid_sample(align_corners=False)`` and zero padding. With ``skip_empty`` (the reference's choice on
the CPU) a mask is only written inside its window ``[floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1,
ceil(y1) + 1)`` clamped to the image; elsewhere it stays empty. Without it (the reference on the GPU)
every pixel of the image is sampled.

Instead of one ``grid_sample`` per instance, windows of similar size (the same powers of two in height
and width) are padded to their group's largest window and sampled in one batched call per group (and
memory chunk); each value is then scattered to its own pixel. Every sampled value is computed from the
same grid coordinate as in the per-instance form, so the result is identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: memory one chunk of sampling may take (the reference's GPU_MEM_LIMIT)
CHUNK_BYTES = 1024**3
# bytes per sampled pixel: the float32 (x, y) grid and value, the int64 scatter index, the masks
_BYTES_PER_PIXEL = 24


def mask_windows(
    boxes: torch.Tensor, img_h: int, img_w: int, skip_empty: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer windows ``x0, y0, x1, y1`` (each ``long (N,)``, end exclusive) that each mask is pasted in."""
    n = boxes.shape[0]
    if not skip_empty:
        zeros = torch.zeros(n, dtype=torch.long, device=boxes.device)
        return zeros, zeros, torch.full_like(zeros, img_w), torch.full_like(zeros, img_h)
    x0 = (boxes[:, 0].floor() - 1).clamp(min=0).long()
    y0 = (boxes[:, 1].floor() - 1).clamp(min=0).long()
    x1 = (boxes[:, 2].ceil() + 1).clamp(max=img_w).long()
    y1 = (boxes[:, 3].ceil() + 1).clamp(max=img_h).long()
    return x0, y0, x1, y1


def _sample_windows(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    win_w: int,
    win_h: int,
) -> torch.Tensor:
    """Sample ``masks (n, 1, M, M)`` on windows of ``win_h x win_w`` pixels starting at ``(x0, y0)``:
    ``(n, win_h, win_w)`` float32."""
    n = masks.shape[0]
    device = masks.device
    bx0, by0, bx1, by1 = boxes.float().split(1, dim=1)  # each (n, 1)
    img_x = (x0[:, None] + torch.arange(win_w, device=device)).float() + 0.5
    img_y = (y0[:, None] + torch.arange(win_h, device=device)).float() + 0.5
    img_x = (img_x - bx0) / (bx1 - bx0) * 2 - 1
    img_y = (img_y - by0) / (by1 - by0) * 2 - 1
    # a degenerate box (x1 == x0) gives inf; the reference samples the mask centre there
    img_x = img_x.masked_fill(torch.isinf(img_x), 0)
    img_y = img_y.masked_fill(torch.isinf(img_y), 0)
    gx = img_x[:, None, :].expand(n, win_h, win_w)
    gy = img_y[:, :, None].expand(n, win_h, win_w)
    grid = torch.stack([gx, gy], dim=3)
    return F.grid_sample(masks.float(), grid, align_corners=False)[:, 0]


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    img_h: int,
    img_w: int,
    threshold: float = 0.5,
    skip_empty: bool | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> torch.Tensor:
    """Paste RoI masks into an ``(img_h, img_w)`` image.

    Args:
        masks: ``(N, M, M)`` (or ``(N, 1, M, M)``) mask probabilities of the detections.
        boxes: ``(N, 4)`` xyxy boxes in the output image's pixels.
        threshold: ``>= 0``: the result is ``bool`` (value ``>= threshold``); ``< 0``: ``uint8``
            probabilities times 255 (the reference's debugging form).
        skip_empty: write each mask only inside its box's window (default: on the CPU, as the reference).
        chunk_bytes: memory bound of one batched sampling call.

    Returns:
        ``(N, img_h, img_w)`` ``bool`` (or ``uint8``) on ``masks``' device.
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(
            f"paste_masks_in_image: masks must be (N, M, M) or (N, 1, M, M), got {tuple(masks.shape)}"
        )
    n = masks.shape[0]
    if boxes.shape != (n, 4):
        raise ValueError(
            f"paste_masks_in_image: boxes must be ({n}, 4) for {n} masks, got {tuple(boxes.shape)}"
        )
    img_h, img_w = int(img_h), int(img_w)
    device = masks.device
    dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros(n, img_h, img_w, dtype=dtype, device=device)
    if n == 0 or img_h == 0 or img_w == 0:
        return out
    if skip_empty is None:
        skip_empty = device.type == "cpu"
    x0, y0, x1, y1 = mask_windows(boxes, img_h, img_w, skip_empty)
    win_w, win_h = (x1 - x0).clamp(min=0), (y1 - y0).clamp(min=0)
    out_flat = out.view(-1)
    for group in _groups(win_h, win_w, chunk_bytes):
        gh, gw = int(win_h[group].max()), int(win_w[group].max())
        if gh == 0 or gw == 0:
            continue
        values = _sample_windows(masks[group], boxes[group], x0[group], y0[group], gw, gh)
        values = values >= threshold if threshold >= 0 else (values * 255).to(torch.uint8)
        # scatter the pixels of each padded window that lie inside its own window
        cols = x0[group, None] + torch.arange(gw, device=device)  # (g, gw)
        rows = y0[group, None] + torch.arange(gh, device=device)  # (g, gh)
        inside = (cols < x1[group, None])[:, None, :] & (rows < y1[group, None])[:, :, None]
        flat = (group[:, None, None] * img_h + rows[:, :, None]) * img_w + cols[:, None, :]
        out_flat[flat[inside]] = values[inside]
    return out


def _groups(win_h: torch.Tensor, win_w: torch.Tensor, chunk_bytes: int) -> list[torch.Tensor]:
    """Index groups sampled in one call each: windows whose height and width fall in the same powers
    of two (so padding a group to its largest window at most quadruples its pixels), split so that
    a group's padded windows fit in ``chunk_bytes``. The number of groups depends on the spread of
    the window sizes, not on the number of masks."""
    octave_h = torch.ceil(torch.log2(win_h.clamp(min=1).float())).long()
    octave_w = torch.ceil(torch.log2(win_w.clamp(min=1).float())).long()
    keys = octave_h * 64 + octave_w
    groups = []
    for key in torch.unique(keys).tolist():
        members = torch.nonzero(keys == key).squeeze(1)
        per_mask = int(win_h[members].max()) * int(win_w[members].max()) * _BYTES_PER_PIXEL
        size = max(1, chunk_bytes // max(per_mask, 1))
        groups.extend(members.split(size))
    return groups


__all__ = ["CHUNK_BYTES", "mask_windows", "paste_masks_in_image"]
