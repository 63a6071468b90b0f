"""Per-benchmark evaluation rules: which toolkit's conventions apply, and how a whole benchmark is scored.

Two protocols are offered (benchmarks.md §2):

* ``"pytracking"`` (default): the analysis code of pytracking / MixFormerV2 / OSTrack (``extract_results.py``),
  which produced MixFormerV2's published LaSOT numbers and, most likely, its LaSOT_ext, TNL2K and UAV123 numbers
  (§2.1, §2.2);
* ``"toolkit"``: the benchmark's official toolkit where it differs: the LaSOT and TNL2K MATLAB toolkits (§2.3,
  §2.4) and, for OTB-100 / UAV123 / NfS, the got10k toolkit's OTB-style experiments (§2.5).

GOT-10k val is always scored as the got10k toolkit's ``ExperimentGOT10k.report`` does (§2.5): AO, SR0.5, SR0.75.
GOT-10k test and TrackingNet test have ground truth on frame 0 only and are scored by their servers.

All ground truth here is in the coordinate frame of the benchmark's own files, and result files are expected in the
same frame, as every toolkit and every published raw result assumes.

Ground-truth rows with a zero or negative width or height (real LaSOT rows such as ``1,1,-1,-1``) are invalid
frames, scored by each protocol's own rule for invalid frames. Lengths follow the toolkits, and every case that is
not an error is logged as a warning naming the result file: results longer than the ground truth are cut to it
(LaSOT monkey-17 in published raw results); shorter results are an error for LaSOT (pytracking), for the MATLAB
toolkits and for the got10k toolkit, and are zero-padded (the missing frames fail) for the other benchmarks under
pytracking.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..data.datasets.annotations import absent_marker_rows
from . import metrics
from .metrics import EvaluationError, FrameErrors

logger = logging.getLogger(__name__)

PROTOCOLS = ("pytracking", "toolkit")
VALIDITY_RULES = ("wh", "xywh")

#: got10k's 101-point success curve thresholds (``np.linspace(0, 1, 101)``); SR0.75 is index 75.
GOT10K_THRESHOLDS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class BenchmarkRules:
    """How one benchmark (a registry name) is evaluated.

    pytracking_name: the dataset tag pytracking's ``calc_seq_err_robust`` switches on ("lasot", "uav", ...).
    uses_visible: pytracking receives ``target_visible`` (LaSOT and LaSOT_ext only).
    toolkit: the official rules used with ``protocol="toolkit"``: "matlab" (LaSOT/TNL2K toolkits), "otb" or "uav"
    (got10k toolkit experiments), "got10k" (GOT-10k val, any protocol), or None (no local ground truth).
    gt_has_nan: the benchmark's own files contain NaN rows (UAV123); elsewhere a NaN row can only come from a reader
    marking an invalid frame, and the raw file there holds numbers.
    """

    dataset: str
    pytracking_name: str
    uses_visible: bool
    toolkit: str | None
    gt_has_nan: bool = False


BENCHMARKS: dict[str, BenchmarkRules] = {r.dataset: r for r in (
    BenchmarkRules("lasot", "lasot", True, "matlab"),
    BenchmarkRules("lasot_ext", "lasot_extension_subset", True, "matlab"),
    BenchmarkRules("tnl2k", "tnl2k", False, "matlab"),
    BenchmarkRules("uav123", "uav", False, "uav", gt_has_nan=True),
    BenchmarkRules("otb100", "otb", False, "otb"),
    BenchmarkRules("nfs", "nfs", False, "otb"),
    BenchmarkRules("got10k_val", "got10k", False, "got10k"),
    BenchmarkRules("got10k_test", "got10k", False, None),
    BenchmarkRules("trackingnet", "trackingnet", False, None),
)}


def get_rules(dataset: str) -> BenchmarkRules:
    """The rules of a registry dataset name; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return BENCHMARKS[dataset]
    except KeyError:
        raise KeyError(f"no evaluation rules for dataset {dataset!r}; known: {sorted(BENCHMARKS)}") from None


# --------------------------------------------------------------------------------------------------------------
# Per-sequence rules


def _check_arrays(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.array(pred_xywh, dtype=np.float64, ndmin=2, copy=True)
    gt = np.asarray(gt_xywh, dtype=np.float64)
    if pred.shape[1:] != (4,) or gt.ndim != 2 or gt.shape[1] != 4:
        raise EvaluationError(f"expected (N, 4) boxes, got predictions {pred.shape} and ground truth {gt.shape}")
    if len(gt) == 0:
        raise EvaluationError("ground truth has no frames")
    return pred, gt


def _fit_flags(flags: np.ndarray | None, n: int, fill: bool) -> np.ndarray | None:
    """Per-frame flags cut or padded (with ``fill``) to n frames (TNL2K ships one sequence with an extra flag)."""
    if flags is None:
        return None
    flags = np.asarray(flags, dtype=bool)[:n]
    return np.concatenate([flags, np.full(n - len(flags), fill)]) if len(flags) < n else flags


def _warn_longer(source: str | None, num_pred: int, num_gt: int) -> None:
    if num_pred > num_gt:
        logger.warning("%s: %d result rows for %d ground-truth frames; the rows after frame %d are ignored, as the "
                       "official analysis does", source or "results", num_pred, num_gt, num_gt)


def pytracking_frame_errors(pred_xywh: np.ndarray, gt_xywh: np.ndarray, dataset: str = "otb",
                            visible: np.ndarray | None = None, validity: str = "wh",
                            exclude_invalid_frames: bool = False,
                            nan_gt_blocks_fill: bool | None = None, source: str | None = None) -> FrameErrors:
    """pytracking's ``calc_seq_err_robust`` (benchmarks.md §2.1), vectorised.

    pred_xywh: (M, 4) predictions; gt_xywh: (N, 4) ground truth; dataset: pytracking's tag ("lasot",
    "lasot_extension_subset", "uav", "tnl2k", "otb", ...); visible: (N,) bool target_visible, required for
    "lasot"/"lasot_extension_subset" and ignored otherwise (only those loaders pass it). validity: "wh" (GT w > 0
    and h > 0; MixFormerV2/OSTrack) or "xywh" (all four > 0; pytracking HEAD). nan_gt_blocks_fill: a NaN GT row
    stops the zero-size fill for that frame (default: literal pytracking, True). source: the result file, named in
    the warning logged when the length rule cuts or pads.

    Rules: NaN or negative w/h in predictions raise; a prediction with w == 0 or h == 0 (frames >= 1, GT row not
    NaN) takes the previous prediction; longer predictions are cut, shorter ones raise for "lasot" and are padded
    with zero boxes (scored as failures) otherwise; frame 0 is set to the GT; invalid frames get IoU -1, normalised
    error -1 (a success) and centre error +inf (-1, a success, for "uav"); for "lasot" frames with the target not
    visible get centre and normalised errors +inf. The denominator is N (or the number of valid frames).
    """
    pred, gt = _check_arrays(pred_xywh, gt_xywh)
    n = len(gt)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise EvaluationError("predictions contain NaN or a negative width/height")
    if validity not in VALIDITY_RULES:
        raise ValueError(f"validity must be one of {VALIDITY_RULES}, got {validity!r}")
    uses_visible = dataset in ("lasot", "lasot_extension_subset")
    if uses_visible and visible is None:
        raise EvaluationError(f"dataset {dataset!r} needs target visibility flags")
    visible = _fit_flags(visible, n, True) if uses_visible else None

    zero_size = (pred[:, 2] == 0) | (pred[:, 3] == 0)
    if zero_size[1:].any():
        blocked = np.zeros(len(pred), dtype=bool)
        if nan_gt_blocks_fill is None or nan_gt_blocks_fill:
            m = min(len(pred), n)
            blocked[:m] = np.isnan(gt[:m]).any(axis=1)
        pred = metrics.forward_fill_rows(pred, zero_size & ~blocked)
    _warn_longer(source, len(pred), n)
    if len(pred) > n:
        pred = pred[:n]
    elif len(pred) < n:
        if dataset == "lasot":
            raise EvaluationError(f"{len(pred)} predicted rows for {n} ground-truth frames (LaSOT needs all)")
        logger.warning("%s: %d result rows for %d ground-truth frames; the %d missing frames are scored as "
                       "failures (zero boxes), as pytracking does", source or "results", len(pred), n, n - len(pred))
        pred = np.concatenate([pred, np.zeros((n - len(pred), 4))])
    pred[0] = gt[0]

    with np.errstate(invalid="ignore"):
        valid = (gt[:, 2] > 0) & (gt[:, 3] > 0) if validity == "wh" else (gt > 0).all(axis=1)
    if visible is not None:
        valid &= visible
    iou = metrics.iou_pixel(pred, gt)
    err = metrics.center_error(pred, gt)
    nerr = metrics.normalized_center_error(pred, gt)
    iou[~valid] = -1.0
    err[~valid] = -1.0 if dataset == "uav" else np.inf
    nerr[~valid] = -1.0
    if dataset == "lasot":
        err[~visible] = np.inf
        nerr[~visible] = np.inf
    if np.isnan(iou).any():
        raise EvaluationError(f"NaN overlap on valid frame {int(np.flatnonzero(np.isnan(iou))[0])}")
    denominator = int(valid.sum()) if exclude_invalid_frames else n
    if denominator <= 0:
        raise EvaluationError("no valid frame to divide by")
    return FrameErrors(iou, err, nerr, valid, float(denominator))


def matlab_frame_errors(pred_xywh: np.ndarray, gt_xywh: np.ndarray, absent: np.ndarray | None = None,
                        nan_gt_blocks_fill: bool = True, source: str | None = None) -> FrameErrors:
    """The LaSOT / TNL2K MATLAB toolkits' ``calc_seq_err_robust.m`` + ``eval_tracker.m`` (benchmarks.md §2.3).

    pred_xywh: (M, 4); gt_xywh: (N, 4); absent: (N,) bool absent flags (cut or padded with False to N).
    Rules: longer predictions are cut, shorter ones raise (MATLAB index error); a prediction row with NaN or
    w <= 0 or h <= 0 (frames >= 1, GT row without NaN) takes the previous prediction; frame 0 is set to the GT;
    absent frames are removed but the denominator stays N (they count as failures); a remaining frame whose GT does
    not have all four of x, y, w, h > 0 gets IoU -1 (failure) and centre and normalised errors -1 (successes).
    Returned arrays cover the frames kept; ``valid`` marks those with all four GT values > 0. source: the result
    file, named in the warning logged when longer predictions are cut.
    """
    pred, gt = _check_arrays(pred_xywh, gt_xywh)
    n = len(gt)
    if len(pred) < n:
        raise EvaluationError(f"{len(pred)} predicted rows for {n} ground-truth frames (the toolkit needs all)")
    _warn_longer(source, len(pred), n)
    pred = pred[:n]
    with np.errstate(invalid="ignore"):
        bad = np.isnan(pred).any(axis=1) | (pred[:, 2] <= 0) | (pred[:, 3] <= 0)
    if nan_gt_blocks_fill:
        bad &= ~np.isnan(gt).any(axis=1)
    pred = metrics.forward_fill_rows(pred, bad)
    pred[0] = gt[0]

    keep = ~_fit_flags(absent, n, False) if absent is not None else np.ones(n, dtype=bool)
    pred, gt = pred[keep], gt[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        err = metrics.center_error(pred, gt)
        nerr = metrics.normalized_center_error(pred, gt)
        valid = (gt > 0).all(axis=1)
    iou = np.full(len(gt), -1.0)
    iou[valid] = metrics.iou_pixel(pred[valid], gt[valid])
    err[~valid] = -1.0
    nerr[~valid] = -1.0
    return FrameErrors(iou, err, nerr, valid, float(n))


def otb_toolkit_frame_errors(pred_xywh: np.ndarray, gt_xywh: np.ndarray, drop_nan_gt: bool = False) -> FrameErrors:
    """The got10k toolkit's ``ExperimentOTB`` (``drop_nan_gt=False``; also NfS) and ``ExperimentUAV123``
    (``drop_nan_gt=True``) per-sequence metrics (benchmarks.md §2.5, got10k 0.1.3).

    The prediction must have exactly N rows (the toolkit asserts it); frame 0 is set to the GT; no zero-size fill;
    IoU is :func:`~mixformerv2.evaluation.metrics.iou_continuous`; UAV123 frames whose GT row has a NaN are removed
    from numerator and denominator. The normalised error (not in got10k 0.1.3) follows the got10k GitHub
    ``normalized_center_error`` (centre difference divided by ``max(1, gt_wh)``).
    """
    pred, gt = _check_arrays(pred_xywh, gt_xywh)
    if len(pred) != len(gt):
        raise EvaluationError(f"{len(pred)} predicted rows for {len(gt)} ground-truth frames (must be equal)")
    pred[0] = gt[0]
    if drop_nan_gt:
        keep = ~np.isnan(gt).any(axis=1)
        pred, gt = pred[keep], gt[keep]
        if not keep.any():
            raise EvaluationError("no annotated frame")
    with np.errstate(invalid="ignore"):
        iou = metrics.iou_continuous(pred, gt)
    err = metrics.center_error(pred, gt)
    nerr = metrics.normalized_center_error(pred, gt, min_gt_size=1.0)
    return FrameErrors(iou, err, nerr, np.ones(len(gt), dtype=bool), float(len(gt)))


def got10k_frame_ious(pred_xywh: np.ndarray, gt_xywh: np.ndarray, cover: np.ndarray,
                      resolution_wh: tuple[float, float]) -> np.ndarray:
    """IoUs the got10k toolkit pools for one GOT-10k val sequence (one repetition), benchmarks.md §2.5.

    pred_xywh, gt_xywh: (N, 4), same length (the toolkit asserts equal shapes); cover: (N,) cover labels 0..8;
    resolution_wh: (W, H) from meta_info.ini. Frame 0 is excluded, both boxes are clipped to the image, and only
    frames with cover > 0 are kept. Returns (K,) float64 IoUs in [0, 1].
    """
    pred, gt = _check_arrays(pred_xywh, gt_xywh)
    if pred.shape != gt.shape:
        raise EvaluationError(f"{len(pred)} predicted rows for {len(gt)} ground-truth frames (must be equal)")
    cover = np.asarray(cover)
    if len(cover) != len(gt):
        raise EvaluationError(f"{len(cover)} cover labels for {len(gt)} ground-truth frames")
    with np.errstate(invalid="ignore"):
        ious = metrics.iou_continuous(pred[1:], gt[1:], bound_wh=tuple(resolution_wh))[cover[1:] > 0]
    if np.isnan(ious).any():
        raise EvaluationError("NaN ground truth on a frame with cover > 0")
    return ious


# --------------------------------------------------------------------------------------------------------------
# Whole benchmark


@dataclass(frozen=True)
class EvalSequence:
    """Ground truth of one sequence as the evaluation needs it.

    gt_xywh: (N, 4) float64 in the benchmark file's coordinates (NaN rows allowed). visible: (N,) bool, pytracking's
    ``target_visible`` (LaSOT: not full_occlusion and not out_of_view), or None. absent: (N,) bool absent flags of
    the MATLAB toolkits (default ``~visible``). cover: (N,) GOT-10k cover labels, or None. resolution_wh: (W, H)
    image size (GOT-10k), or None.
    """

    name: str
    gt_xywh: np.ndarray
    visible: np.ndarray | None = None
    absent: np.ndarray | None = None
    cover: np.ndarray | None = None
    resolution_wh: tuple[float, float] | None = None


def eval_sequence(sequence, dataset: str, absent: np.ndarray | None = None) -> EvalSequence:
    """The :class:`EvalSequence` of a dataset reader's ``Sequence`` (boxes are kept as the files store them).

    LaSOT / LaSOT_ext: ``visible`` is not full_occlusion and not out_of_view (``meta['absent']``), without the
    reader's w > 0 and h > 0 term, as pytracking defines ``target_visible``; those flags are also the toolkit's
    absent frames. TNL2K: no flag file ships with the dataset, so unless ``absent`` is given (the toolkit's
    ``annos/absent/<seq>.txt``), the toolkit's absent frames are taken as the ``0,0,0,0`` rows (its absent frames
    are all ``0,0,0,0``); other rows without a positive size stay in, as invalid frames. Absent flags of another
    length than the ground truth are cut or padded with "present", with a warning. GOT-10k: ``meta['cover']`` and
    ``meta['resolution']``.
    """
    rules = get_rules(dataset)
    meta = getattr(sequence, "meta", None) or {}
    gt = np.asarray(sequence.gt_xywh, dtype=np.float64)
    visible = None
    if rules.uses_visible:
        visible = ~np.asarray(meta["absent"], dtype=bool) if "absent" in meta else np.asarray(sequence.visible)
    if absent is not None and len(absent) != len(gt):
        logger.warning("%s: %d absent flags for %d ground-truth rows; flags are cut or padded with 'present' to the "
                       "ground truth", sequence.name, len(absent), len(gt))
    if absent is None and rules.toolkit == "matlab":
        absent = ~visible if visible is not None else absent_marker_rows(gt)
    resolution = meta.get("resolution")
    return EvalSequence(name=sequence.name, gt_xywh=gt, visible=visible,
                        absent=None if absent is None else np.asarray(absent, dtype=bool),
                        cover=None if meta.get("cover") is None else np.asarray(meta["cover"]),
                        resolution_wh=None if resolution is None else tuple(resolution))


def sequence_errors(rules: BenchmarkRules, protocol: str, seq: EvalSequence, pred_xywh: np.ndarray,
                    validity: str = "wh", exclude_invalid_frames: bool = False,
                    source: str | None = None) -> FrameErrors:
    """Per-frame errors of one sequence under ``protocol`` ("pytracking" or "toolkit") for a benchmark whose
    toolkit is not "got10k". source: the result file, named in length warnings."""
    if protocol == "pytracking":
        return pytracking_frame_errors(pred_xywh, seq.gt_xywh, rules.pytracking_name, seq.visible, validity,
                                       exclude_invalid_frames, nan_gt_blocks_fill=rules.gt_has_nan, source=source)
    if protocol != "toolkit":
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if rules.toolkit == "matlab":
        absent = seq.absent
        if absent is None and seq.visible is not None:
            absent = ~np.asarray(seq.visible, dtype=bool)
        return matlab_frame_errors(pred_xywh, seq.gt_xywh, absent, nan_gt_blocks_fill=rules.gt_has_nan,
                                   source=source)
    if rules.toolkit in ("otb", "uav"):
        return otb_toolkit_frame_errors(pred_xywh, seq.gt_xywh, drop_nan_gt=rules.toolkit == "uav")
    raise ValueError(f"{rules.dataset}: no per-frame toolkit rules ({rules.toolkit!r})")


def evaluate_tracker(rules: BenchmarkRules, sequences: list[EvalSequence], predictions: list[list[np.ndarray]],
                     protocol: str = "pytracking", validity: str = "wh",
                     exclude_invalid_frames: bool = False, sources: list[list[str]] | None = None) -> dict:
    """Score one tracker on a benchmark.

    sequences: the S sequences; predictions: for each sequence a list of (M, 4) arrays, one per run (runs are
    averaged per sequence, as pytracking's ``merge_results``, or pooled for GOT-10k, as the got10k toolkit does).
    sources: for each sequence the result file of each run, named in length warnings and errors (default: the
    sequence name and run number).
    Returns, in percent, ``auc, op50, op75, precision, norm_precision, success_curve (21), precision_curve (51),
    norm_precision_curve (51)`` (MATLAB toolkits add ``precision_auc, norm_precision_auc``: the curve means that
    their 'AUC' ranking prints), or for GOT-10k val ``ao, sr50, sr75, success_curve (101)``. An error in one
    sequence is re-raised naming it.
    """
    if rules.toolkit is None:
        raise EvaluationError(f"{rules.dataset}: ground truth is withheld (frame 0 only); pack the results and "
                              "submit them to the benchmark's server")
    if len(sequences) != len(predictions):
        raise ValueError(f"{len(sequences)} sequences but {len(predictions)} prediction lists")
    if rules.toolkit == "got10k":
        return _evaluate_got10k(sequences, predictions)
    toolkit_matlab = protocol == "toolkit" and rules.toolkit == "matlab"
    thresholds = {"pytracking": metrics.OVERLAP_THRESHOLDS,
                  "toolkit": metrics.OVERLAP_THRESHOLDS_MATLAB if toolkit_matlab
                  else metrics.OVERLAP_THRESHOLDS_LINSPACE}[protocol]
    if sources is not None and [len(s) for s in sources] != [len(r) for r in predictions]:
        raise ValueError("sources must name one result file per run of each sequence")
    curves = []
    for index, (seq, runs) in enumerate(zip(sequences, predictions)):
        names = sources[index] if sources is not None else [f"{seq.name} run {k + 1}" for k in range(len(runs))]
        per_run = []
        for pred, source in zip(runs, names):
            try:
                errors = sequence_errors(rules, protocol, seq, pred, validity, exclude_invalid_frames, str(source))
            except EvaluationError as err:
                where = f"{seq.name}: {source}" if sources is not None else seq.name
                raise EvaluationError(f"{where}: {err}") from err
            per_run.append(metrics.sequence_curves(errors, thresholds))
        curves.append([np.mean([getattr(c, k) for c in per_run], axis=0)
                       for k in ("success", "precision", "norm_precision")])
    stacked = [np.stack([c[i] for c in curves]) for i in range(3)]
    averaged = [metrics.average_curves(c, drop_all_zero=toolkit_matlab) for c in stacked]
    summary = metrics.summarize_curves(*averaged)
    if toolkit_matlab:
        summary["precision_auc"] = float(100.0 * averaged[1].mean())
        summary["norm_precision_auc"] = float(100.0 * averaged[2].mean())
        dropped = int((stacked[0].sum(axis=1) <= np.finfo(float).eps).sum())
        if dropped:
            logger.info("%s: %d all-failed sequences left out of the success average (toolkit rule)",
                        rules.dataset, dropped)
    return summary


def _evaluate_got10k(sequences: list[EvalSequence], predictions: list[list[np.ndarray]]) -> dict:
    pooled = []
    for seq, runs in zip(sequences, predictions):
        if seq.cover is None or seq.resolution_wh is None:
            raise EvaluationError(f"{seq.name}: GOT-10k val needs cover labels (cover.label) and the resolution "
                                  "(meta_info.ini)")
        try:
            pooled.extend(got10k_frame_ious(pred, seq.gt_xywh, seq.cover, seq.resolution_wh) for pred in runs)
        except EvaluationError as err:
            raise EvaluationError(f"{seq.name}: {err}") from err
    ious = np.concatenate(pooled) if pooled else np.zeros(0)
    if len(ious) == 0:
        raise EvaluationError("GOT-10k val: no frame with cover > 0 to score")
    curve = (ious[:, None] > GOT10K_THRESHOLDS[None, :]).mean(axis=0)
    return {"ao": float(100.0 * ious.mean()), "sr50": float(100.0 * (ious > 0.5).mean()),
            "sr75": float(100.0 * (ious > 0.75).mean()), "num_frames": int(len(ious)),
            "success_curve": (100.0 * curve).tolist()}
