"""Crop geometry shared by training and tracking (the official ``sample_target`` semantics).

A crop is a square of side ``ceil(sqrt(w * h) * factor)`` pixels centred on a box, padded with zeros where it
leaves the image and resized (bilinear) to ``output_size``. Golden file: ``tests/data/golden/crops.pt``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Crop:
    """A square crop of a frame.

    image: (S, S, 3) uint8, same channel order as the frame; padding_mask: (S, S) bool, True where padded (None
    when not asked for: the tracker does not use it, and it costs more than the image); resize_factor:
    output_size / crop_side (crop pixels per frame pixel); center_xy: the frame point the crop is
    centred on (the box centre before the crop origin is rounded); side: crop side in frame pixels.
    """

    image: np.ndarray
    padding_mask: np.ndarray | None
    resize_factor: float
    center_xy: tuple[float, float]
    side: int


def crop_side(box_xywh, factor: float) -> int:
    """Side (frame pixels) of the square crop around ``box_xywh`` for a context ``factor``."""
    w, h = float(box_xywh[2]), float(box_xywh[3])
    side = math.ceil(math.sqrt(w * h) * factor)
    if not side >= 1:
        raise ValueError(f"box {list(box_xywh)} is too small (or NaN) to crop with factor {factor}")
    return side


def crop_square_xywh(image: np.ndarray, box_xywh, factor: float, output_size: int,
                     padding_mask: bool = True) -> Crop:
    """Cut the square crop of side ``crop_side(box, factor)`` centred on ``box_xywh`` and resize it.

    image: (H, W, 3) uint8; padding_mask: also compute ``Crop.padding_mask`` (else None). Reproduces the official
    quirks exactly: the origin is Python-``round``-ed, and the
    right/bottom padding is one pixel larger than needed, so a crop touching that edge drops the last column/row.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    side = crop_side(box_xywh, factor)
    cx, cy = x + 0.5 * w, y + 0.5 * h
    x1 = round(cx - side * 0.5)
    y1 = round(cy - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    height, width = image.shape[:2]
    pad_l, pad_t = max(0, -x1), max(0, -y1)
    pad_r, pad_b = max(x2 - width + 1, 0), max(y2 - height + 1, 0)
    patch = image[y1 + pad_t:y2 - pad_b, x1 + pad_l:x2 - pad_r]
    padded = cv2.copyMakeBorder(patch, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_CONSTANT)
    size = (output_size, output_size)
    mask = None
    if padding_mask:
        mask = np.ones(padded.shape[:2], dtype=np.float64)
        mask[pad_t:padded.shape[0] - pad_b, pad_l:padded.shape[1] - pad_r] = 0
        mask = cv2.resize(mask, size).astype(bool)
    return Crop(
        image=cv2.resize(padded, size),
        padding_mask=mask,
        resize_factor=output_size / side,
        center_xy=(cx, cy),
        side=side,
    )


def box_to_crop_norm(box_xywh, crop: Crop, output_size: int) -> np.ndarray:
    """Map a frame box into a crop, normalised by the crop size: (4,) x, y, w, h in [0, 1] when inside.

    The crop centre is ``(output_size - 1) / 2`` (the training convention of the official pipeline).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    rf = crop.resize_factor
    cx = (output_size - 1) / 2 + (x + 0.5 * w - crop.center_xy[0]) * rf
    cy = (output_size - 1) / 2 + (y + 0.5 * h - crop.center_xy[1]) * rf
    bw, bh = w * rf, h * rf
    return np.array([cx - 0.5 * bw, cy - 0.5 * bh, bw, bh]) / output_size


def box_from_crop(box_cxcywh_norm, prev_box_xywh, resize_factor: float, output_size: int) -> list[float]:
    """Map a predicted crop box back to the frame, as the official tracker does.

    box_cxcywh_norm: (4,) centre/size normalised by the crop size; prev_box_xywh: the box the crop was centred on.
    The crop centre is taken as ``side / 2`` (the tracker convention, unlike ``box_to_crop_norm``).
    Returns ``[x, y, w, h]`` in frame pixels (unclipped).
    """
    cx, cy, w, h = (float(v) * output_size / resize_factor for v in box_cxcywh_norm)
    half = 0.5 * output_size / resize_factor
    px, py, pw, ph = (float(v) for v in prev_box_xywh)
    cx_img = cx + px + 0.5 * pw - half
    cy_img = cy + py + 0.5 * ph - half
    return [cx_img - 0.5 * w, cy_img - 0.5 * h, w, h]
