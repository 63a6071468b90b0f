"""Per-frame and per-sequence tracking metrics on plain numpy arrays.

Boxes are ``(N, 4) float64`` rows ``x, y, w, h`` in pixels, in the coordinate frame of the benchmark's own
annotation file (IoU and centre errors do not depend on the origin; only the validity rules that test the sign of
x or y do). Nothing here knows about datasets or files: :mod:`mixformerv2.evaluation.protocols` decides which rule
applies to which benchmark.

Two IoU conventions exist in the toolkits, and both are kept bit-for-bit (same operation order, so the same
rounding):

* :func:`iou_pixel`: pytracking and the LaSOT/TNL2K MATLAB toolkits, "+1 pixel" corners
  (``x2 = x + w - 1``, side ``= min(x2) - max(x1) + 1`` clamped at 0);
* :func:`iou_continuous`: the got10k toolkit's ``rect_iou`` (``x2 = x + w``, ``eps`` in the denominator, result
  clipped to [0, 1], optional clipping of both boxes to the image).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The 21 overlap thresholds 0, 0.05, ..., 1 exactly as ``torch.arange(0, 1.05, 0.05, dtype=float64)`` makes them
#: in pytracking's ``extract_results.py`` (elements 13 and 15 are one ulp above 0.65 and 0.75).
OVERLAP_THRESHOLDS = np.array([
    0.0, 0.05, 0.1, 0.15000000000000002, 0.2, 0.25, 0.30000000000000004, 0.35000000000000003, 0.4, 0.45, 0.5,
    0.55, 0.6000000000000001, 0.6500000000000001, 0.7000000000000001, 0.7500000000000001, 0.8,
    0.8500000000000001, 0.9, 0.9500000000000001, 1.0])

#: MATLAB's ``0:0.05:1`` (LaSOT/TNL2K toolkits): the colon operator fills the first half as ``k*d`` and the second
#: half as ``1 - (20-k)*d`` so that the sequence is symmetric and ends exactly at 1.
OVERLAP_THRESHOLDS_MATLAB = np.array([k * 0.05 if k < 10 else (0.5 if k == 10 else 1.0 - (20 - k) * 0.05)
                                      for k in range(21)])

#: ``np.linspace(0, 1, 21)``: the got10k toolkit's OTB-style experiments.
OVERLAP_THRESHOLDS_LINSPACE = np.linspace(0.0, 1.0, 21)

#: Centre-error thresholds 0, 1, ..., 50 pixels.
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)

#: Normalised centre-error thresholds 0, 0.01, ..., 0.50 (computed as k / 100, as every toolkit does).
NORM_CENTER_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0

#: Index of 20 px in CENTER_THRESHOLDS and of 0.20 in NORM_CENTER_THRESHOLDS (the reported precision values).
PRECISION_INDEX = 20
#: Indices of 0.50 and 0.75 in the 21-point overlap thresholds (OP50, OP75).
OP50_INDEX, OP75_INDEX = 10, 15


class EvaluationError(ValueError):
    """A prediction or ground-truth array that a benchmark's rules reject (wrong length, NaN overlap, ...)."""


def iou_pixel(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """IoU with the "+1 pixel" convention of pytracking and the MATLAB toolkits.

    pred_xywh, gt_xywh: (N, 4) float64. Returns (N,) float64; NaN where an input row is NaN or both areas are 0.
    """
    tl = np.maximum(pred_xywh[:, :2], gt_xywh[:, :2])
    br = np.minimum(pred_xywh[:, :2] + pred_xywh[:, 2:] - 1.0, gt_xywh[:, :2] + gt_xywh[:, 2:] - 1.0)
    side = np.maximum(br - tl + 1.0, 0.0)
    inter = side[:, 0] * side[:, 1]
    union = pred_xywh[:, 2] * pred_xywh[:, 3] + gt_xywh[:, 2] * gt_xywh[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def clip_to_image(boxes_xywh: np.ndarray, bound_wh: tuple[float, float]) -> np.ndarray:
    """Clip boxes to the image as the got10k toolkit's ``rect_iou(bound=...)`` does, on a copy.

    x is clipped to [0, W] and then w to [0, W - x] (y, h likewise): a box sticking out on the left is shifted, not
    cut. boxes_xywh: (N, 4); bound_wh: (W, H) pixels. Returns (N, 4) float64.
    """
    out = np.array(boxes_xywh, dtype=np.float64, copy=True)
    width, height = bound_wh
    out[:, 0] = np.clip(out[:, 0], 0, width)
    out[:, 1] = np.clip(out[:, 1], 0, height)
    out[:, 2] = np.clip(out[:, 2], 0, width - out[:, 0])
    out[:, 3] = np.clip(out[:, 3], 0, height - out[:, 1])
    return out


def iou_continuous(pred_xywh: np.ndarray, gt_xywh: np.ndarray,
                   bound_wh: tuple[float, float] | None = None) -> np.ndarray:
    """The got10k toolkit's ``rect_iou``: continuous corners, ``inter / (union + eps)`` clipped to [0, 1].

    With ``bound_wh = (W, H)`` both boxes are first clipped to the image (:func:`clip_to_image`); the inputs are
    never modified. pred_xywh, gt_xywh: (N, 4). Returns (N,) float64 (NaN rows stay NaN).
    """
    if bound_wh is not None:
        pred_xywh, gt_xywh = clip_to_image(pred_xywh, bound_wh), clip_to_image(gt_xywh, bound_wh)
    x1 = np.maximum(pred_xywh[:, 0], gt_xywh[:, 0])
    y1 = np.maximum(pred_xywh[:, 1], gt_xywh[:, 1])
    x2 = np.minimum(pred_xywh[:, 0] + pred_xywh[:, 2], gt_xywh[:, 0] + gt_xywh[:, 2])
    y2 = np.minimum(pred_xywh[:, 1] + pred_xywh[:, 3], gt_xywh[:, 1] + gt_xywh[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = pred_xywh[:, 2] * pred_xywh[:, 3] + gt_xywh[:, 2] * gt_xywh[:, 3] - inter
    ious = inter / (union + np.finfo(float).eps)
    return np.clip(ious, 0.0, 1.0)


def box_centers(boxes_xywh: np.ndarray) -> np.ndarray:
    """Pixel centres ``xy + 0.5 * (wh - 1)`` of (N, 4) boxes: (N, 2) float64."""
    return boxes_xywh[:, :2] + 0.5 * (boxes_xywh[:, 2:] - 1.0)


def center_error(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Euclidean distance between the pixel centres: (N,) float64 pixels."""
    diff = box_centers(pred_xywh) - box_centers(gt_xywh)
    return np.sqrt((diff ** 2).sum(axis=1))


def normalized_center_error(pred_xywh: np.ndarray, gt_xywh: np.ndarray, min_gt_size: float | None = None
                            ) -> np.ndarray:
    """Distance between the centres after dividing each centre per axis by the ground-truth (w, h): (N,) float64.

    As pytracking computes it (each centre divided first, then subtracted; no guard, so w or h = 0 gives inf/NaN).
    ``min_gt_size=1`` gives the got10k GitHub variant, which divides the centre difference by ``max(1, gt_wh)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        if min_gt_size is not None:
            diff = (box_centers(pred_xywh) - box_centers(gt_xywh)) / np.maximum(min_gt_size, gt_xywh[:, 2:])
        else:
            diff = box_centers(pred_xywh) / gt_xywh[:, 2:] - box_centers(gt_xywh) / gt_xywh[:, 2:]
        return np.sqrt((diff ** 2).sum(axis=1))


def forward_fill_rows(boxes_xywh: np.ndarray, replace: np.ndarray) -> np.ndarray:
    """Replace every row where ``replace`` is True (row 0 excepted) by the previous row, after that row's own
    replacement, i.e. by the last row kept before it. This is the sequential ``pred[i] = pred[i-1]`` loop of the
    toolkits, vectorised. boxes_xywh: (N, 4); replace: (N,) bool. Returns a new (N, 4) array.
    """
    keep = ~np.asarray(replace, dtype=bool)
    if keep.all():
        return boxes_xywh.copy()
    keep[0] = True
    source = np.where(keep, np.arange(len(keep)), 0)
    np.maximum.accumulate(source, out=source)
    return boxes_xywh[source]


def success_curve(ious: np.ndarray, thresholds: np.ndarray = OVERLAP_THRESHOLDS,
                  denominator: float | None = None) -> np.ndarray:
    """Fraction of frames with IoU strictly greater than each threshold: (T,) float64 in [0, 1].

    ious: (M,) (-1 or NaN mark frames that never succeed). denominator: number of frames to divide by (default M; the
    toolkits keep removed or invalid frames in it).
    """
    ious = np.asarray(ious, dtype=np.float64)
    values = np.sort(ious[~np.isnan(ious)])  # NaN never succeeds, as NaN > t is False
    count = len(values) - np.searchsorted(values, thresholds, side="right")  # number of values > t
    return count / float(len(ious) if denominator is None else denominator)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = CENTER_THRESHOLDS,
                    denominator: float | None = None) -> np.ndarray:
    """Fraction of frames whose centre error is at most each threshold ("<="): (T,) float64 in [0, 1].

    errors: (M,) pixels or normalised units (+inf never succeeds, -1 always succeeds). denominator: as in
    :func:`success_curve`.
    """
    errors = np.asarray(errors, dtype=np.float64)
    count = np.searchsorted(np.sort(errors), thresholds, side="right")  # values <= t (NaN sorts last: never)
    return count / float(len(errors) if denominator is None else denominator)


@dataclass(frozen=True)
class FrameErrors:
    """Per-frame errors of one sequence after a benchmark's rules were applied.

    iou: (M,) overlap, -1 on invalid frames. center_error: (M,) pixels; normalized_error: (M,) units of GT size;
    +inf means "always a failure" and -1 "always a success". valid: (M,) bool, frames the rules score normally.
    denominator: the number of frames the curves divide by (may differ from M: the MATLAB toolkits drop absent
    frames but keep them in the denominator).
    """

    iou: np.ndarray
    center_error: np.ndarray
    normalized_error: np.ndarray
    valid: np.ndarray
    denominator: float


@dataclass(frozen=True)
class SequenceCurves:
    """Curves of one sequence as fractions in [0, 1]: success (21,), precision (51,), norm_precision (51,)."""

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray


def sequence_curves(errors: FrameErrors, overlap_thresholds: np.ndarray = OVERLAP_THRESHOLDS) -> SequenceCurves:
    """The three curves of one sequence from its :class:`FrameErrors`."""
    return SequenceCurves(
        success=success_curve(errors.iou, overlap_thresholds, errors.denominator),
        precision=precision_curve(errors.center_error, CENTER_THRESHOLDS, errors.denominator),
        norm_precision=precision_curve(errors.normalized_error, NORM_CENTER_THRESHOLDS, errors.denominator))


def average_curves(curves: np.ndarray, drop_all_zero: bool = False) -> np.ndarray:
    """Mean over sequences with equal weight per sequence: (S, T) -> (T,).

    drop_all_zero: the MATLAB toolkits' ``aa(sum(aa,2)>eps,:)``: sequences whose whole curve sums to at most
    machine eps are left out of the mean (an all-failed sequence is not penalised).
    """
    curves = np.asarray(curves, dtype=np.float64)
    if drop_all_zero:
        curves = curves[curves.sum(axis=1) > np.finfo(float).eps]
    if len(curves) == 0:
        return np.zeros(np.shape(curves)[1])
    return curves.mean(axis=0)


def summarize_curves(success: np.ndarray, precision: np.ndarray, norm_precision: np.ndarray) -> dict:
    """Benchmark scores in percent from dataset-level curves (fractions): AUC = mean of the 21-point success curve,
    OP50 / OP75 = success at 0.50 / 0.75, precision = precision at 20 px, norm_precision = normalised precision at
    0.20; the curves themselves are returned in percent too."""
    success, precision, norm_precision = (100.0 * np.asarray(c, dtype=np.float64)
                                          for c in (success, precision, norm_precision))
    return {
        "auc": float(success.mean()),
        "op50": float(success[OP50_INDEX]),
        "op75": float(success[OP75_INDEX]),
        "precision": float(precision[PRECISION_INDEX]),
        "norm_precision": float(norm_precision[PRECISION_INDEX]),
        "success_curve": success.tolist(),
        "precision_curve": precision.tolist(),
        "norm_precision_curve": norm_precision.tolist(),
    }
