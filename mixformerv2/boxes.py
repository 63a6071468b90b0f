"""Box formats and the only place where they change.

Formats (the name of a variable says which one it holds):
  * ``xywh``   top-left corner plus size, 0-based pixels (the benchmarks' files, the tracker's output);
  * ``xyxy``   top-left and bottom-right corners;
  * ``cxcywh`` centre plus size.
Every function accepts numpy arrays or torch tensors of shape (..., 4) and returns the same type.
"""
from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _stack(parts, like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def xywh_to_xyxy(box: Array) -> Array:
    x, y, w, h = (box[..., i] for i in range(4))
    return _stack([x, y, x + w, y + h], box)


def xyxy_to_xywh(box: Array) -> Array:
    x1, y1, x2, y2 = (box[..., i] for i in range(4))
    return _stack([x1, y1, x2 - x1, y2 - y1], box)


def cxcywh_to_xyxy(box: Array) -> Array:
    cx, cy, w, h = (box[..., i] for i in range(4))
    return _stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], box)


def xyxy_to_cxcywh(box: Array) -> Array:
    x1, y1, x2, y2 = (box[..., i] for i in range(4))
    return _stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], box)


def xywh_to_cxcywh(box: Array) -> Array:
    x, y, w, h = (box[..., i] for i in range(4))
    return _stack([x + 0.5 * w, y + 0.5 * h, w, h], box)


def cxcywh_to_xywh(box: Array) -> Array:
    cx, cy, w, h = (box[..., i] for i in range(4))
    return _stack([cx - 0.5 * w, cy - 0.5 * h, w, h], box)


def clip_box_xywh(box_xywh, height: int, width: int, margin: int = 0) -> list[float]:
    """Clip a frame box the way the official tracker does before returning it.

    x1 is kept in [0, W - margin] and x2 = x1 + w in [margin, W] (y likewise); the size is at least ``margin``.
    Returns a plain list ``[x, y, w, h]`` (pixels).
    """
    x1, y1, w, h = (float(v) for v in box_xywh)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


def check_box_xywh(box_xywh, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if a box is not finite or has a negative or zero size."""
    values = [float(v) for v in box_xywh]
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"{where}: box {values} is not four finite numbers")
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"{where}: box {values} has a zero or negative size")
