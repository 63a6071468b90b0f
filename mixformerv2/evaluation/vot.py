"""The VOT toolkit's rectangle overlap and its unsupervised accuracy, on plain numpy arrays.

The toolkit (vot-toolkit 0.7.4, ``vot.region.raster.calculate_overlap``) does not use continuous coordinates: it
stores a rectangle as float32, rounds it to whole pixels (``np.round``: halves to even), rasterises it as the pixels
``x .. x + w - 1`` and ``y .. y + h - 1`` (the "+1 pixel" corners of :func:`~mixformerv2.evaluation.metrics.iou_pixel`)
and, with the image bounds, counts only pixels inside the image. Two special cases of its code are kept: when the
bounding box of both rectangles is a single pixel column or row the overlap is 1, and when its part inside the
image is a single column or row the overlap is 0.
"""
from __future__ import annotations

import numpy as np

from .metrics import EvaluationError


def _pixel_bounds(boxes_xywh: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inclusive pixel bounds (left, top, right, bottom) of (N, 4) boxes after the toolkit's float32 rounding."""
    boxes = np.round(np.asarray(boxes_xywh, dtype=np.float32)).astype(np.float64)
    return boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2] - 1, boxes[:, 1] + boxes[:, 3] - 1


def _extent(low: np.ndarray, high: np.ndarray, window_low: np.ndarray, window_high: np.ndarray) -> np.ndarray:
    """Number of whole pixels of [low, high] inside [window_low, window_high] (inclusive bounds), at least 0."""
    return np.maximum(np.minimum(high, window_high) - np.maximum(low, window_low) + 1, 0)


def iou_vot(pred_xywh: np.ndarray, gt_xywh: np.ndarray, bound_wh: tuple[int, int] | None = None) -> np.ndarray:
    """Overlap of the VOT toolkit for rectangles (see the module docstring).

    pred_xywh, gt_xywh: (N, 4) pixels; bound_wh: (W, H) of the image, or None for no clipping (the toolkit's
    ``bounded`` analyses pass the sequence size). Returns (N,) float64 in [0, 1]; NaN where an input row is NaN.
    """
    pred, gt = np.asarray(pred_xywh, dtype=np.float64), np.asarray(gt_xywh, dtype=np.float64)
    l1, t1, r1, b1 = _pixel_bounds(pred)
    l2, t2, r2, b2 = _pixel_bounds(gt)
    # the window the toolkit rasterises: the bounding box of both rectangles, cut to the image
    ul, ut, ur, ub = np.minimum(l1, l2), np.minimum(t1, t2), np.maximum(r1, r2), np.maximum(b1, b2)
    if bound_wh is None:
        wl, wt, wr, wb = ul, ut, ur, ub
    else:
        width, height = bound_wh
        wl, wt = np.maximum(ul, 0), np.maximum(ut, 0)
        wr, wb = np.minimum(ur, width - 1), np.minimum(ub, height - 1)
    area1 = _extent(l1, r1, wl, wr) * _extent(t1, b1, wt, wb)
    area2 = _extent(l2, r2, wl, wr) * _extent(t2, b2, wt, wb)
    inter = _extent(np.maximum(l1, l2), np.minimum(r1, r2), wl, wr) * \
        _extent(np.maximum(t1, t2), np.minimum(b1, b2), wt, wb)
    union = area1 + area2 - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.where(union > 0, inter / union, 0.0)
    overlap = np.where((wr <= wl) | (wb <= wt), 0.0, overlap)
    overlap = np.where((ur <= ul) | (ub <= ut), 1.0, overlap)
    nan_rows = np.isnan(pred).any(axis=1) | np.isnan(gt).any(axis=1)
    return np.where(nan_rows, np.nan, overlap)


def unsupervised_accuracy(predictions: list[np.ndarray], ground_truths: list[np.ndarray],
                          sizes_wh: list[tuple[int, int]], burnin: int = 1) -> float:
    """Accuracy of the toolkit's unsupervised experiment (``average_accuracy``, weighted, bounded).

    Per sequence: the mean :func:`iou_vot` over the frames after the first ``burnin`` frames whose ground truth is
    known (a NaN row is the toolkit's unknown region), 0 when no frame is left; the sequences are averaged with
    their lengths as weights. predictions[i], ground_truths[i]: (N_i, 4) pixels; the prediction rows of the first
    ``burnin`` frames are not used. sizes_wh[i]: the image size (W, H).
    """
    if not (len(predictions) == len(ground_truths) == len(sizes_wh)) or not predictions:
        raise EvaluationError(f"{len(predictions)} trajectories, {len(ground_truths)} ground truths and "
                              f"{len(sizes_wh)} image sizes: expected the same positive number")
    total, frames = 0.0, 0
    for index, (pred, gt, size) in enumerate(zip(predictions, ground_truths, sizes_wh)):
        pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
        if pred.shape != gt.shape:
            raise EvaluationError(f"sequence {index}: trajectory {pred.shape} and ground truth {gt.shape} differ")
        known = ~np.isnan(gt).any(axis=1)
        known[:burnin] = False
        overlaps = iou_vot(pred[known], gt[known], size)
        if np.isnan(overlaps).any():
            raise EvaluationError(f"sequence {index}: the trajectory has NaN rows on frames with a known ground truth")
        total += (float(np.mean(overlaps)) if overlaps.size else 0.0) * len(gt)
        frames += len(gt)
    return total / frames
