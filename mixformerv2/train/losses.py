"""Training losses: the official CIoU variant, L1, the side-vs-corner KL of distillation, feature MSE.

All functions are pure (no state, no device of their own) and follow the device and dtype of their inputs.
Boxes are normalised search-crop coordinates ``xyxy`` (x1, y1, x2, y2), as the student predicts them.

Side orders. The student's side logits are in prediction-token order ``models.heads.SIDES`` = (left, right, top,
bottom). The marginals of the teacher's corner maps come in the official actor's order ``MARGINAL_SIDES`` =
(left, top, right, bottom). ``side_kl`` compares side i with side i, so both arguments must use one order:
``corner_side_targets`` returns the teacher's marginals already in token order (and on the student's bins).

Bins. Both heads place bin k of n at the coordinate k / n (``SideBinHead.bin_positions``, ``soft_argmax``), so a
distribution over n bins is a distribution over the points {0, 1/n, ..., (n-1)/n} of [0, 1).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..boxes import xywh_to_xyxy
from ..models.heads import SIDES

MARGINAL_SIDES = ("left", "top", "right", "bottom")
_MARGINALS_TO_TOKENS = [MARGINAL_SIDES.index(side) for side in SIDES]  # [0, 2, 1, 3]


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (N, 4), got {tuple(boxes.shape)}")
    bad = (~torch.isfinite(boxes)).any(dim=1).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}: row {i} {boxes[i].tolist()} is not four finite numbers")


def _aspect_angle(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """atan(w / h) as the official code computes it, with a finite gradient where h == 0.

    Returns the angle and a mask of point boxes (w == h == 0), whose aspect ratio is undefined (0 / 0).
    """
    flat = h == 0
    point = flat & (w == 0)
    ratio_angle = torch.atan(w / torch.where(flat, torch.ones_like(h), h))
    # a flat box is at +-pi/2, like atan(+-inf); atan2 gives that value with a gradient that stays finite
    edge_angle = torch.atan2(torch.where(point, torch.ones_like(w), w), h)
    return torch.where(flat, edge_angle, ratio_angle), point


def ciou_loss(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official CIoU loss (``lib/utils/box_ops.ciou_loss``), official_spec §3.4.

    CIoU = clamp(IoU - rho^2 / c^2 - alpha * v, -1, 1) with rho the distance of the centres, c the diagonal of the
    enclosing box, v = 4 / pi^2 * (atan(w_t / h_t) - atan(w_p / h_p))^2 and alpha = [IoU > 0.5] * v / (1 - IoU + v)
    computed without gradient. No epsilon anywhere, as in the official code.

    Where the official code divides 0 by 0 (and returns NaN) this returns the limit instead: identical boxes give
    IoU 1 and loss 0 (alpha = 0), two different zero-area boxes give IoU 0, the centre term of a zero-size
    enclosing box is 0, and a point box (zero width and height) has no aspect term (v = 0). Everywhere else the
    values equal the official ones, flat boxes (one zero side) and predicted boxes with x2 < x1 included.

    Args:
        pred_xyxy: (N, 4) predicted boxes (any order of the corners is accepted, as officially).
        target_xyxy: (N, 4) target boxes, x2 >= x1 and y2 >= y1.
    Returns:
        loss: () mean over the N boxes of 1 - CIoU, differentiable w.r.t. ``pred_xyxy``.
        iou: (N,) IoU of each pair, detached (for logging).
    Raises:
        ValueError: on a shape mismatch, no boxes, a non-finite coordinate or a target with x2 < x1 or y2 < y1.
    """
    _check_boxes(pred_xyxy, "pred_xyxy")
    _check_boxes(target_xyxy, "target_xyxy")
    if pred_xyxy.shape != target_xyxy.shape or len(pred_xyxy) == 0:
        raise ValueError(f"ciou_loss: pred_xyxy {tuple(pred_xyxy.shape)} and target_xyxy "
                         f"{tuple(target_xyxy.shape)} must be the same non-empty (N, 4)")
    inverted = ((target_xyxy[:, 2:] < target_xyxy[:, :2]).any(dim=1)).nonzero()
    if len(inverted):
        i = int(inverted[0])
        raise ValueError(f"target_xyxy: row {i} {target_xyxy[i].tolist()} has x2 < x1 or y2 < y1")

    px1, py1, px2, py2 = pred_xyxy.unbind(-1)
    tx1, ty1, tx2, ty2 = target_xyxy.unbind(-1)
    pw, ph, tw, th = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1

    inter = ((torch.minimum(px2, tx2) - torch.maximum(px1, tx1)).clamp(min=0)
             * (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)).clamp(min=0))
    union = pw * ph + tw * th - inter
    identical = (pred_xyxy == target_xyxy).all(dim=1)
    has_union = union != 0
    iou = torch.where(has_union, inter / torch.where(has_union, union, torch.ones_like(union)),
                      identical.to(union.dtype))

    centre_dist2 = ((tx1 + tx2 - px1 - px2) / 2) ** 2 + ((ty1 + ty2 - py1 - py2) / 2) ** 2
    enclose_diag2 = ((torch.maximum(px2, tx2) - torch.minimum(px1, tx1)).clamp(min=0) ** 2
                     + (torch.maximum(py2, ty2) - torch.minimum(py1, ty1)).clamp(min=0) ** 2)
    has_enclosure = enclose_diag2 > 0
    u = torch.where(has_enclosure,
                    centre_dist2 / torch.where(has_enclosure, enclose_diag2, torch.ones_like(enclose_diag2)),
                    torch.zeros_like(enclose_diag2))

    pred_angle, pred_point = _aspect_angle(pw, ph)
    target_angle, target_point = _aspect_angle(tw, th)
    v = (4 / math.pi ** 2) * (target_angle - pred_angle) ** 2
    v = torch.where(pred_point | target_point, torch.zeros_like(v), v)

    with torch.no_grad():
        denominator = 1 - iou + v
        alpha = torch.where(denominator != 0, (iou > 0.5).to(v.dtype) * v / denominator, torch.zeros_like(v))
    ciou = (iou - u - alpha * v).clamp(min=-1.0, max=1.0)
    return (1 - ciou).mean(), iou.detach()


def box_l1_loss(pred_xyxy: torch.Tensor, target_xyxy: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the N x 4 coordinates (the official ``F.l1_loss``): (N, 4), (N, 4) -> ()."""
    if pred_xyxy.shape != target_xyxy.shape:
        raise ValueError(f"box_l1_loss: pred_xyxy {tuple(pred_xyxy.shape)} and target_xyxy "
                         f"{tuple(target_xyxy.shape)} differ in shape")
    return F.l1_loss(pred_xyxy, target_xyxy)


def target_xyxy_from_xywh(box_xywh_norm: torch.Tensor) -> torch.Tensor:
    """The box-loss target: (N, 4) normalised xywh in the search crop -> xyxy clamped to [0, 1] (official)."""
    return xywh_to_xyxy(box_xywh_norm).clamp(min=0.0, max=1.0)


def _as_square_maps(prob: torch.Tensor, name: str) -> torch.Tensor:
    if prob.dim() == 3 and prob.shape[1] == prob.shape[2]:
        return prob
    if prob.dim() == 2:
        side = math.isqrt(prob.shape[1])
        if side * side == prob.shape[1]:
            return prob.view(prob.shape[0], side, side)
    raise ValueError(f"{name}: expected (B, F*F) or (B, F, F) corner probabilities, got {tuple(prob.shape)}")


def corner_marginals(prob_tl: torch.Tensor, prob_br: torch.Tensor) -> torch.Tensor:
    """Side distributions of the teacher's corner maps, in ``MARGINAL_SIDES`` order (left, top, right, bottom).

    Args:
        prob_tl, prob_br: (B, F*F) row-major (index y * F + x) or (B, F, F) indexed [b, y, x]; probabilities of
            the top-left and bottom-right corner (each map sums to 1).
    Returns:
        (B, 4, F): left = top-left map summed over y, top = summed over x; right and bottom likewise from the
        bottom-right map. Bin k is the coordinate k / F, as in ``models.heads.soft_argmax``.
    """
    tl = _as_square_maps(prob_tl, "prob_tl")
    br = _as_square_maps(prob_br, "prob_br")
    if tl.shape != br.shape:
        raise ValueError(f"corner_marginals: prob_tl {tuple(prob_tl.shape)} and prob_br {tuple(prob_br.shape)} "
                         "differ in shape")
    return torch.stack([tl.sum(dim=1), tl.sum(dim=2), br.sum(dim=1), br.sum(dim=2)], dim=1)


def _split_matrix(num_source: int, num_target: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(num_source, num_target) weights: source point i / F split linearly between its two nearest target points."""
    position = torch.arange(num_source, dtype=torch.float64) * num_target / num_source  # in target bins
    low = position.floor().long()
    frac = position - low
    # only when there are fewer target bins: points past the last target point (K - 1) / K go to that bin
    past_end = low >= num_target - 1
    low = torch.where(past_end, torch.full_like(low, num_target - 1), low)
    frac = torch.where(past_end, torch.zeros_like(frac), frac)
    high = (low + 1).clamp(max=num_target - 1)
    rows = torch.arange(num_source)
    weights = torch.zeros(num_source, num_target, dtype=torch.float64)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights.to(device=device, dtype=dtype)


def resample_bins(probs: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Map distributions over F bins onto ``num_bins`` (K) bins covering the same [0, 1) interval.

    The heads read bin k of n as the point k / n (a soft-argmax over points), so the resampling treats bins as
    points too: the mass of source point i / F goes to the two target points around it, split linearly by
    distance. That keeps each distribution's total mass and its mean, i.e. the coordinate the head would decode,
    exactly. The one exception, with K < F, is mass past the last target point (K - 1) / K: it goes wholly to the
    last bin, which moves the mean by less than one target bin.

    Args:
        probs: (..., F) non-negative masses.
        num_bins: K >= 1.
    Returns:
        (..., K), same dtype and device; ``probs`` itself when K == F.
    """
    if num_bins < 1:
        raise ValueError(f"resample_bins: num_bins must be >= 1, got {num_bins}")
    if probs.dim() == 0 or probs.shape[-1] < 1:
        raise ValueError(f"resample_bins: expected (..., F) with F >= 1, got {tuple(probs.shape)}")
    if probs.shape[-1] == num_bins:
        return probs
    return probs @ _split_matrix(probs.shape[-1], num_bins, probs.dtype, probs.device)


def corner_side_targets(prob_tl: torch.Tensor, prob_br: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Stage-1 KL target: the teacher's corner marginals in the student's token order on the student's bins.

    Args:
        prob_tl, prob_br: teacher corner probabilities, (B, F*F) or (B, F, F) (softmax of ``corner_logits``).
        num_bins: the student's bins per side (``SideBinHead.num_bins``); F is resampled onto it if different.
    Returns:
        (B, 4, num_bins) probabilities, sides in ``SIDES`` order (left, right, top, bottom), ready for
        ``side_kl(student.side_logits, ...)``.
    """
    return resample_bins(corner_marginals(prob_tl, prob_br)[:, _MARGINALS_TO_TOKENS], num_bins)


def side_kl(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(student)) per side, batch-mean, averaged over the four sides (official reduction).

    = 1 / (4 B) * sum_{b, side, k} p log(p / q), with 0 log 0 = 0. No temperature.

    Args:
        student_logits: (B, 4, K) logits.
        target_probs: (B, 4, K) probabilities in the same side order (each side sums to 1); no gradient flows
            into them.
    Returns:
        () the loss.
    Raises:
        ValueError: on a shape mismatch, or a target that is not a set of distributions (negative entries or a
            side not summing to 1, e.g. logits passed by mistake).
    """
    if student_logits.shape != target_probs.shape or student_logits.dim() != 3 or student_logits.shape[1] != 4:
        raise ValueError(f"side_kl: student_logits {tuple(student_logits.shape)} and target_probs "
                         f"{tuple(target_probs.shape)} must both be (B, 4, K)")
    target = target_probs.detach()
    sums = target.sum(dim=-1)
    lowest, sum_min, sum_max = torch.stack([target.min(), sums.min(), sums.max()]).tolist()
    if not (lowest >= 0 and abs(sum_min - 1) <= 1e-2 and abs(sum_max - 1) <= 1e-2):
        raise ValueError(f"side_kl: target_probs are not distributions (min {lowest:.3g}, sides sum to "
                         f"{sum_min:.4g}..{sum_max:.4g})")
    log_q = F.log_softmax(student_logits, dim=-1)
    return F.kl_div(log_q, target, reduction="sum") / (student_logits.shape[0] * 4)


def _pick(features: Sequence[torch.Tensor], layers: Sequence[int] | None, who: str) -> list[torch.Tensor]:
    if layers is None:
        return list(features)
    missing = [i for i in layers if not -len(features) <= i < len(features)]
    if missing:
        raise ValueError(f"feature_mse: {who} layer {missing[0]} does not exist in {len(features)} blocks")
    return [features[i] for i in layers]


def feature_mse(student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor],
                student_layers: Sequence[int] | None = None,
                teacher_layers: Sequence[int] | None = None) -> torch.Tensor:
    """Feature distillation (stage 2): MSE between paired block outputs, mean over every element (official).

    Args:
        student_feats, teacher_feats: per-block outputs, each (B, N, C) (``block_features`` of the models).
        student_layers, teacher_layers: block indices to pair up (``train.distill_layers_student`` /
            ``_teacher``); None takes every given feature in order.
    Returns:
        () mean over the pairs of the per-pair mean squared error; teacher features are detached.
    """
    student = _pick(student_feats, student_layers, "student")
    teacher = _pick(teacher_feats, teacher_layers, "teacher")
    if not student or len(student) != len(teacher):
        raise ValueError(f"feature_mse: need the same non-zero number of student and teacher layers, got "
                         f"{len(student)} and {len(teacher)}")
    for i, (s, t) in enumerate(zip(student, teacher)):
        if s.shape != t.shape:
            raise ValueError(f"feature_mse: pair {i}: student {tuple(s.shape)} vs teacher {tuple(t.shape)}")
    return F.mse_loss(torch.stack(student), torch.stack([t.detach() for t in teacher]))
