"""Hand-computed checks of every evaluation rule (benchmarks.md §2; official_spec §4.8)."""
from __future__ import annotations

import numpy as np
import pytest

from mixformerv2.evaluation import metrics, protocols
from mixformerv2.evaluation.metrics import EvaluationError
from mixformerv2.evaluation.protocols import (EvalSequence, evaluate_tracker, get_rules, got10k_frame_ious,
                                              matlab_frame_errors, otb_toolkit_frame_errors,
                                              pytracking_frame_errors)

A = np.array


# ----------------------------------------------------------------------------------------------- box measures

def test_iou_pixel_hand_case_and_equals_continuous():
    pred, gt = A([[0, 0, 10, 10], [0, 0, 10, 10], [3, 4, 7, 2]]), A([[5, 5, 10, 10], [20, 0, 5, 5], [3, 4, 7, 2]])
    np.testing.assert_allclose(metrics.iou_pixel(pred, gt), [25 / 175, 0.0, 1.0])
    np.testing.assert_allclose(metrics.iou_continuous(pred, gt), [25 / 175, 0.0, 1.0])


def test_iou_continuous_clips_both_boxes_to_the_image():
    gt = A([[95, 0, 5, 10], [5, 0, 10, 10]])
    pred = A([[90, 0, 20, 10], [-10, 0, 20, 10]])
    # right edge: pred cut to w=10 -> 50 / 100; left edge: pred shifted to x=0 (not cut) -> 100 / 200
    np.testing.assert_allclose(metrics.iou_continuous(pred, gt, bound_wh=(100, 100)), [0.5, 0.5])
    np.testing.assert_allclose(metrics.iou_continuous(pred, gt), [0.25, 0.2])
    assert pred[1, 0] == -10  # inputs untouched


def test_centres_use_half_pixel_convention():
    np.testing.assert_allclose(metrics.box_centers(A([[0, 0, 10, 20]])), [[4.5, 9.5]])
    np.testing.assert_allclose(metrics.center_error(A([[3, 4, 10, 20]]), A([[0, 0, 10, 20]])), [5.0])


def test_normalized_error_divides_each_centre_by_gt_size():
    pred, gt = A([[10, 0, 10, 10]]), A([[0, 0, 10, 20]])
    # centres (14.5, 4.5) and (4.5, 9.5) -> /(10, 20) -> (1.45, .225) - (.45, .475) = (1, -.25)
    np.testing.assert_allclose(metrics.normalized_center_error(pred, gt), [np.sqrt(1.0625)])


def test_forward_fill_is_sequential():
    boxes = A([[1, 1, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0], [5, 5, 5, 5]], dtype=float)
    out = metrics.forward_fill_rows(boxes, A([True, False, True, True, False]))
    np.testing.assert_array_equal(out[:, 0], [1, 2, 2, 2, 5])


# ----------------------------------------------------------------------------------------------- curves

def test_success_is_strict_and_precision_inclusive():
    curve = metrics.success_curve(A([0.5, 1.0]))
    assert curve[9] == 1.0 and curve[10] == 0.5 and curve[20] == 0.0  # 0.5 > 0.5 is False; 1.0 > 1.0 is False
    prec = metrics.precision_curve(A([20.0, 20.5]))
    assert prec[19] == 0.0 and prec[20] == 0.5 and prec[21] == 1.0


def test_threshold_sets_match_the_toolkits():
    assert len(metrics.OVERLAP_THRESHOLDS) == 21 and metrics.OVERLAP_THRESHOLDS[15] == np.nextafter(0.75, 1)
    assert metrics.OVERLAP_THRESHOLDS[13] == np.nextafter(0.65, 1)
    assert metrics.OVERLAP_THRESHOLDS_MATLAB[13] == 1 - 7 * 0.05 < 0.65 and metrics.OVERLAP_THRESHOLDS_MATLAB[20] == 1
    assert metrics.NORM_CENTER_THRESHOLDS[20] == 0.2 and len(metrics.CENTER_THRESHOLDS) == 51
    # an IoU of exactly 13/20 passes MATLAB's 0.65 but not pytracking's
    assert metrics.success_curve(A([13 / 20]), metrics.OVERLAP_THRESHOLDS_MATLAB)[13] == 1.0
    assert metrics.success_curve(A([13 / 20]))[13] == 0.0


def test_auc_is_mean_of_21_points_and_perfect_tracker_scores_20_of_21():
    gt = A([[10, 10, 20, 20]] * 5, dtype=float)
    errors = pytracking_frame_errors(gt, gt, "otb")
    c = metrics.sequence_curves(errors)
    summary = metrics.summarize_curves(c.success, c.precision, c.norm_precision)
    assert summary["auc"] == pytest.approx(100 * 20 / 21)
    assert summary["op50"] == summary["op75"] == summary["precision"] == summary["norm_precision"] == 100.0
    assert len(summary["success_curve"]) == 21 and len(summary["precision_curve"]) == 51
    assert len(summary["norm_precision_curve"]) == 51


def test_sequences_weigh_equally():
    long_good = np.ones((1, 21))
    short_bad = np.zeros((1, 21))
    np.testing.assert_allclose(metrics.average_curves(np.vstack([long_good, short_bad])), 0.5)
    np.testing.assert_allclose(metrics.average_curves(np.vstack([long_good, short_bad]), drop_all_zero=True), 1.0)


# ----------------------------------------------------------------------------------------------- pytracking

GT = A([[10, 10, 20, 20], [12, 10, 20, 20], [14, 10, 20, 20], [16, 10, 20, 20]], dtype=float)


def test_first_frame_is_set_to_ground_truth():
    pred = GT.copy()
    pred[0] = [500, 500, 5, 5]
    e = pytracking_frame_errors(pred, GT, "otb")
    np.testing.assert_array_equal(e.iou, [1, 1, 1, 1])
    assert e.denominator == 4


def test_zero_size_prediction_takes_previous_prediction_before_frame0_reset():
    pred = A([[500, 500, 5, 5], [0, 0, 0, 7], [12, 10, 20, 0], [16, 10, 20, 20]], dtype=float)
    e = pytracking_frame_errors(pred, GT, "otb")
    # frame 1 copies the raw frame-0 prediction (far away), frame 2 copies frame 1 (filled): both IoU 0
    np.testing.assert_array_equal(e.iou, [1, 0, 0, 1])


def test_zero_size_fill_is_blocked_by_nan_ground_truth_for_uav():
    gt = GT.copy()
    gt[1] = np.nan
    pred = A([[10, 10, 20, 20], [0, 0, 0, 0], [0, 0, 0, 0], [16, 10, 20, 20]], dtype=float)
    e = pytracking_frame_errors(pred, gt, "uav")
    # frame 1 not filled (GT NaN), so frame 2 copies its zero box: IoU 0; frame 1 invalid: IoU -1, error -1
    np.testing.assert_array_equal(e.iou, [1, -1, 0, 1])
    assert e.center_error[1] == -1 and e.normalized_error[1] == -1
    assert metrics.precision_curve(e.center_error)[0] == 0.75  # the NaN frame counts as a precision success


def test_invalid_predictions_raise():
    with pytest.raises(EvaluationError):
        pytracking_frame_errors(A([[1, 1, -1, 1]] * 4, dtype=float), GT, "otb")
    with pytest.raises(EvaluationError):
        pytracking_frame_errors(A([[1, 1, np.nan, 1]] * 4, dtype=float), GT, "otb")


def test_extra_rows_are_cut_and_missing_rows_padded_or_rejected():
    longer = np.vstack([GT, [[0, 0, 0, 0], [1, 1, 1, 1]]])
    assert len(pytracking_frame_errors(longer, GT, "otb").iou) == 4
    e = pytracking_frame_errors(GT[:2], GT, "otb")
    np.testing.assert_array_equal(e.iou, [1, 1, 0, 0])  # zero-padded rows fail, not copied
    assert e.denominator == 4
    with pytest.raises(EvaluationError, match="LaSOT"):
        pytracking_frame_errors(GT[:2], GT, "lasot", visible=np.ones(4, bool))
    assert len(pytracking_frame_errors(longer, GT, "lasot", visible=np.ones(4, bool)).iou) == 4


def test_invalid_frame_conventions_and_x_or_y_not_positive():
    gt = GT.copy()
    gt[1] = [0, 0, 0, 0]        # absent: invalid under every rule
    gt[2] = [-3, 10, 20, 20]    # x <= 0 with w, h > 0: valid for MixFormerV2 ("wh"), invalid for "xywh"
    pred = gt.copy()
    pred[1] = [40, 40, 5, 5]
    e = pytracking_frame_errors(pred, gt, "tnl2k")
    np.testing.assert_array_equal(e.iou, [1, -1, 1, 1])
    assert e.center_error[1] == np.inf and e.normalized_error[1] == -1
    e = pytracking_frame_errors(pred, gt, "tnl2k", validity="xywh")
    np.testing.assert_array_equal(e.iou, [1, -1, -1, 1])
    assert np.isinf(e.center_error[2])
    e = pytracking_frame_errors(pred, gt, "tnl2k", exclude_invalid_frames=True)
    assert e.denominator == 3


def test_lasot_invisible_frames_fail_everything_but_lasot_ext_norm_precision_succeeds():
    visible = A([True, False, True, True])
    e = pytracking_frame_errors(GT, GT, "lasot", visible=visible)
    assert e.iou[1] == -1 and e.center_error[1] == np.inf and e.normalized_error[1] == np.inf
    e_ext = pytracking_frame_errors(GT, GT, "lasot_extension_subset", visible=visible)
    assert e_ext.iou[1] == -1 and e_ext.center_error[1] == np.inf and e_ext.normalized_error[1] == -1
    # a visible frame whose GT has w = 0: invalid, and for LaSOT its normalised error stays -1 (a success)
    gt = GT.copy()
    gt[2] = [14, 10, 0, 20]
    e = pytracking_frame_errors(GT, gt, "lasot", visible=np.ones(4, bool))
    assert e.iou[2] == -1 and e.center_error[2] == np.inf and e.normalized_error[2] == -1
    with pytest.raises(EvaluationError):
        pytracking_frame_errors(GT, GT, "lasot")


def test_other_datasets_ignore_visibility():
    e = pytracking_frame_errors(GT, GT, "tnl2k", visible=A([True, False, False, False]))
    np.testing.assert_array_equal(e.iou, [1, 1, 1, 1])


# ----------------------------------------------------------------------------------------------- MATLAB toolkits

def test_matlab_absent_frames_removed_but_counted_and_nonpositive_gt_is_precision_success():
    gt = GT.copy()
    gt[2] = [-3, 10, 20, 20]
    pred = gt.copy()
    pred[3] = [100, 100, 20, 20]
    e = matlab_frame_errors(pred, gt, absent=A([False, True, False, False]))
    np.testing.assert_array_equal(e.iou, [1, -1, 0])          # frames 0, 2, 3 kept
    np.testing.assert_array_equal(e.center_error[:2], [0, -1])  # x <= 0: centre error -1 (a success)
    assert e.normalized_error[1] == -1 and e.denominator == 4
    c = metrics.sequence_curves(e, metrics.OVERLAP_THRESHOLDS_MATLAB)
    assert c.success[0] == 0.25 and c.precision[0] == 0.5


def test_matlab_lengths_and_fill_of_negative_or_nan_rows():
    with pytest.raises(EvaluationError):
        matlab_frame_errors(GT[:3], GT)
    pred = np.vstack([GT, [[0, 0, 5, 5]]])
    pred[2] = [1, 1, -4, 5]
    pred[3] = [np.nan, 1, 1, 1]
    e = matlab_frame_errors(pred, GT)
    # frames 2 and 3 take frame 1's box (12,10): IoU with GT rows 2 and 3
    np.testing.assert_allclose(e.iou, [1, 1, 18 * 20 / (800 - 360), 16 * 20 / (800 - 320)])


def test_matlab_protocol_drops_all_failed_sequences():
    rules = get_rules("lasot")
    good = EvalSequence("a", GT, visible=np.ones(4, bool))
    lost = EvalSequence("b", GT, visible=A([False, True, True, True]))  # frame 0 absent: nothing can succeed
    far = np.tile([[500.0, 500, 5, 5]], (4, 1))
    args = (rules, [good, lost], [[GT], [far]])
    toolkit = evaluate_tracker(*args, protocol="toolkit")
    pytracking = evaluate_tracker(*args, protocol="pytracking")
    assert toolkit["auc"] == pytest.approx(100 * 20 / 21)
    assert pytracking["auc"] == pytest.approx(100 * 20 / 21 / 2)
    assert "norm_precision_auc" in toolkit and "norm_precision_auc" not in pytracking


def test_tnl2k_toolkit_vs_pytracking_on_x_not_positive():
    rules = get_rules("tnl2k")
    gt = GT.copy()
    gt[1] = [-2, 10, 20, 20]
    gt[3] = [0, 0, 0, 0]
    seq = protocols.eval_sequence(_Seq("s", gt, (gt[:, 2] > 0) & (gt[:, 3] > 0)), "tnl2k")
    np.testing.assert_array_equal(seq.absent, [False, False, False, True])
    py = evaluate_tracker(rules, [seq], [[gt]], "pytracking")
    tk = evaluate_tracker(rules, [seq], [[gt]], "toolkit")
    # pytracking: frames 0-2 succeed (x <= 0 scored normally), absent frame fails, norm error -1 succeeds
    assert py["op50"] == 75 and py["precision"] == 75 and py["norm_precision"] == 100
    # toolkit: x <= 0 frame fails overlap but is a precision success; absent frame fails both
    assert tk["op50"] == 50 and tk["precision"] == 75 and tk["norm_precision"] == 75


class _Seq:
    def __init__(self, name, gt, visible, meta=None):
        self.name, self.gt_xywh, self.visible, self.meta = name, gt, visible, meta or {}


# ----------------------------------------------------------------------------------------------- got10k toolkit

def test_otb_toolkit_requires_equal_length_and_uav_drops_nan_frames():
    with pytest.raises(EvaluationError):
        otb_toolkit_frame_errors(GT[:3], GT)
    gt = GT.copy()
    gt[2] = np.nan
    e = otb_toolkit_frame_errors(GT, gt, drop_nan_gt=True)
    assert len(e.iou) == 3 and e.denominator == 3
    rules = get_rules("uav123")
    seq = EvalSequence("uav_x", gt)
    py = evaluate_tracker(rules, [seq], [[GT]], "pytracking")
    tk = evaluate_tracker(rules, [seq], [[GT]], "toolkit")
    assert py["op50"] == 75 and py["precision"] == 100   # NaN frame: overlap failure, precision success
    assert tk["op50"] == 100 and tk["precision"] == 100  # NaN frame removed


def test_got10k_excludes_first_frame_drops_cover0_clips_and_pools_frames():
    gt = A([[0, 0, 10, 10], [0, 0, 10, 10], [90, 0, 20, 10], [0, 0, 10, 10]], dtype=float)
    pred = A([[50, 50, 5, 5], [0, 0, 10, 10], [95, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    ious = got10k_frame_ious(pred, gt, cover=A([8, 8, 4, 0]), resolution_wh=(100, 50))
    # frame 0 excluded (even though wrong), frame 3 dropped (cover 0), frame 2 clipped: gt w 10, pred w 5 -> 0.5
    np.testing.assert_allclose(ious, [1.0, 0.5])
    rules = get_rules("got10k_val")
    one = EvalSequence("a", gt, cover=A([8, 8, 4, 0]), resolution_wh=(100, 50))
    two = EvalSequence("b", gt[:2], cover=A([8, 8]), resolution_wh=(100, 50))
    wrong = A([[0, 0, 10, 10], [30, 30, 10, 10]], dtype=float)
    out = evaluate_tracker(rules, [one, two], [[pred], [wrong]])
    assert out["ao"] == pytest.approx(100 * 1.5 / 3)  # frame-pooled: (1 + .5 + 0) / 3, not mean(.75, 0)
    assert out["sr50"] == pytest.approx(100 / 3)      # 0.5 is not > 0.5
    assert out["sr75"] == pytest.approx(100 / 3) and len(out["success_curve"]) == 101
    with pytest.raises(EvaluationError, match="b"):
        evaluate_tracker(rules, [one, two], [[pred], [wrong[:1]]])
    with pytest.raises(EvaluationError, match="cover"):
        evaluate_tracker(rules, [EvalSequence("c", gt)], [[pred]])


def test_withheld_ground_truth_is_an_error():
    with pytest.raises(EvaluationError, match="server"):
        evaluate_tracker(get_rules("got10k_test"), [EvalSequence("a", GT)], [[GT]])


# ----------------------------------------------------------------------------------------------- cross-checks

def _random_case(rng, n=60):
    gt = np.column_stack([rng.integers(-5, 200, n), rng.integers(-5, 200, n), rng.integers(0, 60, n),
                          rng.integers(0, 60, n)]).astype(float)
    pred = np.clip(gt + rng.normal(0, 8, gt.shape), [-10, -10, 0, 0], None).round()
    pred[rng.random(n) < 0.1, 2] = 0
    return pred, gt


def _loop_reference(pred, gt, dataset, visible):
    """A frame-by-frame rewrite of pytracking's rules (§2.1), independent of the vectorised code."""
    pred = pred.copy()
    for i in range(1, len(pred)):
        if (pred[i, 2] == 0 or pred[i, 3] == 0) and not np.isnan(gt[i]).any():
            pred[i] = pred[i - 1]
    pred[0] = gt[0]
    iou, err, nerr = [], [], []
    for p, g, vis in zip(pred, gt, visible):
        x1, y1 = max(p[0], g[0]), max(p[1], g[1])
        x2, y2 = min(p[0] + p[2] - 1, g[0] + g[2] - 1), min(p[1] + p[3] - 1, g[1] + g[3] - 1)
        inter = max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)
        cp, cg = p[:2] + 0.5 * (p[2:] - 1), g[:2] + 0.5 * (g[2:] - 1)
        if g[2] > 0 and g[3] > 0 and vis:
            iou.append(inter / (p[2] * p[3] + g[2] * g[3] - inter))
            err.append(np.sqrt(((cp - cg) ** 2).sum()))
            nerr.append(np.sqrt(((cp / g[2:] - cg / g[2:]) ** 2).sum()))
        else:
            iou.append(-1)
            err.append(np.inf)
            nerr.append(np.inf if dataset == "lasot" and not vis else -1)
    return np.array(iou), np.array(err), np.array(nerr)


@pytest.mark.parametrize("dataset", ["lasot", "lasot_extension_subset", "otb"])
def test_vectorised_rules_match_a_frame_loop(dataset):
    rng = np.random.default_rng(3)
    for _ in range(5):
        pred, gt = _random_case(rng)
        visible = rng.random(len(gt)) > 0.2 if dataset != "otb" else np.ones(len(gt), bool)
        e = pytracking_frame_errors(pred, gt, dataset, visible if dataset != "otb" else None)
        iou, err, nerr = _loop_reference(pred, gt, dataset, visible)
        np.testing.assert_array_equal(e.iou, iou)
        np.testing.assert_array_equal(e.center_error, err)
        np.testing.assert_array_equal(e.normalized_error, nerr)


def test_matches_got10k_package_metrics():
    got10k_metrics = pytest.importorskip("got10k.utils.metrics")
    otb = pytest.importorskip("got10k.experiments.otb")
    uav = pytest.importorskip("got10k.experiments.uav123")
    rng = np.random.default_rng(5)
    pred, gt = _random_case(rng, 200)
    pred[:, 2:] += 1
    gt[:, 2:] += 1
    np.testing.assert_array_equal(metrics.iou_continuous(pred, gt), got10k_metrics.rect_iou(pred.copy(), gt.copy()))
    np.testing.assert_array_equal(metrics.iou_continuous(pred, gt, (150, 120)),
                                  got10k_metrics.rect_iou(pred.copy(), gt.copy(), bound=(150, 120)))
    np.testing.assert_array_equal(metrics.center_error(pred, gt), got10k_metrics.center_error(pred, gt))
    gt[rng.random(len(gt)) < 0.1] = np.nan
    for cls, drop in ((otb.ExperimentOTB, False), (uav.ExperimentUAV123, True)):
        exp = cls.__new__(cls)
        exp.nbins_iou, exp.nbins_ce = 21, 51
        boxes = pred.copy()
        boxes[0] = gt[0]
        succ, prec = exp._calc_curves(*exp._calc_metrics(boxes, gt.copy()))
        ours = metrics.sequence_curves(otb_toolkit_frame_errors(pred, gt, drop), metrics.OVERLAP_THRESHOLDS_LINSPACE)
        np.testing.assert_allclose(ours.success, succ, atol=1e-12)
        np.testing.assert_allclose(ours.precision, prec, atol=1e-12)


def test_curves_equal_broadcast_counts_with_ties_and_nan():
    rng = np.random.default_rng(1)
    ious = np.concatenate([rng.random(500), metrics.OVERLAP_THRESHOLDS, [0.5, 0.75, -1, np.nan]])
    errs = np.concatenate([rng.random(500) * 60, np.arange(51.0), [-1, np.inf, np.nan]])
    np.testing.assert_array_equal(metrics.success_curve(ious),
                                  (ious[:, None] > metrics.OVERLAP_THRESHOLDS).sum(0) / len(ious))
    np.testing.assert_array_equal(metrics.precision_curve(errs),
                                  (errs[:, None] <= metrics.CENTER_THRESHOLDS).sum(0) / len(errs))


def test_nan_rows_outside_uav_are_invalid_frames_and_do_not_block_the_fill():
    gt = GT.copy()
    gt[1] = np.nan  # a reader's "absent" row; the raw file holds numbers there
    pred = A([[10, 10, 20, 20], [0, 0, 0, 0], [0, 0, 5, 0], [16, 10, 20, 20]], dtype=float)
    seq = EvalSequence("s", gt)
    e = protocols.sequence_errors(get_rules("tnl2k"), "pytracking", seq, pred)
    # frames 1 and 2 both take frame 0's box: frame 1 invalid (-1), frame 2 IoU with (14,10,20,20) = 320/480
    np.testing.assert_allclose(e.iou, [1, -1, 16 * 20 / (800 - 320), 1])
    assert e.center_error[1] == np.inf and e.normalized_error[1] == -1


def test_eval_sequence_uses_occlusion_flags_not_reader_visibility_for_lasot():
    gt = GT.copy()
    gt[2] = [14, 10, 0, 20]
    seq = _Seq("cat-1", gt, A([True, False, False, True]), {"absent": A([False, True, False, False])})
    es = protocols.eval_sequence(seq, "lasot")
    np.testing.assert_array_equal(es.visible, [True, False, True, True])
    np.testing.assert_array_equal(es.absent, [False, True, False, False])
    given = protocols.eval_sequence(_Seq("t", GT, np.ones(4, bool)), "tnl2k", absent=A([0, 0, 1, 0]))
    np.testing.assert_array_equal(given.absent, [False, False, True, False])
    got = protocols.eval_sequence(_Seq("g", GT, np.ones(4, bool), {"cover": [8, 8, 0, 8], "resolution": (64, 48)}),
                                  "got10k_val")
    assert got.resolution_wh == (64, 48) and list(got.cover) == [8, 8, 0, 8]
