"""The backends against each other on one benchmark: AUC per backend and precision, and trajectory agreement.

Each variant ``(backend, precision)`` builds its own tracker and tracks the same sequences in this process, one
variant after the other. Per variant: the benchmark's AUC (its evaluation rules; boxes truncated toward zero, the
runner's ``box_rule``), the AUC difference to the reference (the first variant, normally torch fp32), the mean IoU
between its boxes and the reference's over all tracked frames (frame 0, the given box, left out), and the median
seconds of a tracker step. This is the accuracy cost of a backend or precision: the README's acceptance bound is
an AUC loss of at most 0.5 points.

One trajectory is one draw. A tracker that loses its target now and then is chaotic: a change far below one grey
level moves it onto another path (measured on quickstart students: Gaussian noise of 1e-5 on the normalised search
crop, about 1/2000 of a grey level, moved one's fp32 AUC from 14.58 to 14.2-14.6; the final one scores 21.75
undisturbed and 19.83 on average, sd 1.69, over 16 runs with noise of 1e-3), and so do the rounding differences of
another precision, library or CPU. So with
``repeats`` R > 0 every variant also tracks the benchmark R more times with such noise (``DitheredNetwork``, seeds
0..R-1, ``dither`` its standard deviation), and the accuracy cost is the difference of the mean AUCs, with its
standard error: the expected loss, not the luck of one draw.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence as Seq

import numpy as np
import torch

from ..config import Config
from ..data.sequence import Sequence
from ..evaluation.metrics import iou_continuous
from ..evaluation.protocols import eval_sequence, evaluate_tracker, get_rules
from ..export.backends import BackendError
from .runner import track_sequence
from .tracker import build_tracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """A backend and precision to compare; ``backend="auto"`` with ``precision=None`` is what auto picks."""

    backend: str
    precision: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``"onnxruntime:int8"`` -> Variant("onnxruntime", "int8"); ``"auto"`` -> Variant("auto")."""
        backend, _, precision = text.partition(":")
        return cls(backend, precision or None)


class DitheredNetwork:
    """A backend (``mixformerv2.export.backends``) whose search crop gets Gaussian noise of standard deviation
    ``sigma`` (normalised image units; one grey level is about 0.017) before every per-frame call, from a generator
    seeded with ``seed``. Everything else is the wrapped backend's."""

    def __init__(self, network, sigma: float, seed: int):
        self.network, self.sigma = network, float(sigma)
        self._generator = torch.Generator().manual_seed(seed)

    def __getattr__(self, name: str):
        return getattr(self.network, name)

    def _dither(self, search: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(search.shape, generator=self._generator)
        return search + self.sigma * noise.to(search.device, search.dtype)

    def forward_search(self, cache, search: torch.Tensor):
        return self.network.forward_search(cache, self._dither(search))

    def forward_full(self, template: torch.Tensor, online, search: torch.Tensor):
        return self.network.forward_full(template, online, self._dither(search))


def _mean_iou(boxes: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float]:
    """(mean over all frames but each first, lowest per-sequence mean) of the IoU between two trajectories."""
    per_sequence = [iou_continuous(a[1:], b[1:]) for a, b in zip(boxes, reference)]
    frames = np.concatenate(per_sequence) if per_sequence else np.zeros(0)
    lowest = min((float(np.mean(s)) for s in per_sequence if len(s)), default=float("nan"))
    return float(np.mean(frames)) if len(frames) else float("nan"), lowest


def _dithered_aucs(tracker, sequences: list[Sequence], score, repeats: int, sigma: float) -> list[float]:
    """AUC of ``repeats`` runs over ``sequences``, run r with ``DitheredNetwork(..., sigma, seed=r)``."""
    network, aucs = tracker.network, []
    try:
        for seed in range(repeats):
            tracker.network = DitheredNetwork(network, sigma, seed)
            aucs.append(score([track_sequence(tracker, seq).boxes_xywh for seq in sequences]))
    finally:
        tracker.network = network
    return aucs


def _spread(aucs: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    return float(np.mean(aucs)), float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0


def compare_backends(cfg: Config, checkpoint: str | Path | None, sequences: Iterable[Sequence], dataset: str,
                     variants: Seq[Variant], device: str = "cpu", export_dir: str | Path | None = None,
                     repeats: int = 0, dither: float = 1e-3) -> dict:
    """Track ``sequences`` (of benchmark ``dataset``, a settings key of ``cfg.test``) with every variant.

    Returns ``{"dataset", "sequences", "frames", "reference", "repeats", "dither", "variants":
    {"<backend>_<precision>": {"backend", "precision", "requested", "auc", "auc_delta", "mean_iou_to_reference",
    "lowest_sequence_iou", "tracker_ms_p50"}}}`` (and ``"calibration"`` for a statically quantised one);
    AUC in percent (points), ``auc_delta`` = variant - reference, agreement and time of the undisturbed run. With ``repeats`` R > 0 each variant also has ``auc_dithered`` (the R
    AUCs with search-crop noise ``dither``, see the module doc), ``auc_mean``, ``auc_sd``, ``auc_mean_delta`` (its
    mean - the reference's) and ``auc_mean_delta_se`` (the standard error of that difference). A variant that
    resolves to one already tracked (``auto``) is not tracked again; ``requested`` lists the variants that resolved
    to it.
    """
    sequences = list(sequences)
    rules = get_rules(dataset)
    truth = [eval_sequence(seq, dataset) for seq in sequences]

    def score(boxes: list[np.ndarray]) -> float:
        return evaluate_tracker(rules, truth, [[np.trunc(b)] for b in boxes])["auc"]

    out = {"dataset": dataset, "sequences": len(sequences), "frames": int(sum(len(s) for s in sequences)),
           "reference": None, "repeats": int(repeats), "dither": float(dither), "variants": {}}
    reference_boxes = reference = None
    for variant in variants:
        try:
            tracker = build_tracker(cfg, checkpoint, device, dataset, None, variant.backend, variant.precision,
                                    export_dir)
        except BackendError as err:  # e.g. an fp32 runtime that computes this graph wrongly: reported, not tracked
            if reference_boxes is None:
                raise
            logger.warning("%s:%s left out: %s", variant.backend, variant.precision, err)
            out.setdefault("left_out", {})[f"{variant.backend}_{variant.precision}"] = str(err)
            continue
        key = f"{tracker.backend}_{tracker.precision}"
        if key in out["variants"]:
            out["variants"][key]["requested"].append(variant.backend)
            logger.info("%s resolves to %s, already tracked", variant.backend, key)
            continue
        results = [track_sequence(tracker, seq) for seq in sequences]
        boxes = [r.boxes_xywh for r in results]
        auc = score(boxes)
        times = np.concatenate([r.times[1:] for r in results])
        row = {"backend": tracker.backend, "precision": tracker.precision, "requested": [variant.backend],
               "auc": auc}
        if getattr(tracker, "calibration", None):
            row["calibration"] = tracker.calibration
        if repeats > 0:
            row["auc_dithered"] = _dithered_aucs(tracker, sequences, score, repeats, dither)
            row["auc_mean"], row["auc_sd"] = _spread(row["auc_dithered"])
        if reference_boxes is None:
            reference_boxes, reference, out["reference"] = boxes, row, key
        mean_iou, lowest = _mean_iou(boxes, reference_boxes)
        row.update(auc_delta=auc - reference["auc"], mean_iou_to_reference=mean_iou, lowest_sequence_iou=lowest,
                   tracker_ms_p50=float(np.median(times) * 1e3) if len(times) else float("nan"))
        if repeats > 0:
            row["auc_mean_delta"] = row["auc_mean"] - reference["auc_mean"]
            row["auc_mean_delta_se"] = float(np.hypot(row["auc_sd"], reference["auc_sd"]) / np.sqrt(repeats))
        out["variants"][key] = row
        logger.info("%s: AUC %.2f (%+.2f)%s, mean IoU to %s %.4f, %.1f ms per frame", key, auc,
                    row["auc_delta"], "" if repeats <= 0 else
                    f"; dithered mean {row['auc_mean']:.2f} ({row['auc_mean_delta']:+.2f} ± "
                    f"{row['auc_mean_delta_se']:.2f})", out["reference"], mean_iou, row["tracker_ms_p50"])
    return out


def format_comparison(result: dict) -> str:
    """A Markdown table of ``compare_backends``' result."""
    repeats = result.get("repeats", 0)
    head = f"{result['dataset']}: {result['sequences']} sequences, {result['frames']} frames; reference " \
           f"{result['reference']}"
    dithered = ""
    if repeats > 0:
        head += f"; {repeats} more runs each with search-crop noise sigma {result['dither']:g}"
        dithered = " dithered AUC mean ± sd | Δ mean ± se |"
    lines = [head, "", "| backend | precision | AUC | ΔAUC |" + dithered +
             " mean IoU to reference | lowest sequence IoU | ms/frame (p50) |",
             "|---" * (7 + 2 * (repeats > 0)) + "|"]
    for key, row in result["variants"].items():
        cells = [row["backend"], row["precision"], f"{row['auc']:.2f}", f"{row['auc_delta']:+.2f}"]
        if repeats > 0:
            cells += [f"{row['auc_mean']:.2f} ± {row['auc_sd']:.2f}", "(reference)" if key == result["reference"]
                      else f"{row['auc_mean_delta']:+.2f} ± {row['auc_mean_delta_se']:.2f}"]
        cells += [f"{row['mean_iou_to_reference']:.4f}", f"{row['lowest_sequence_iou']:.4f}",
                  f"{row['tracker_ms_p50']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n{row['backend']} {row['precision']}: int8 activation ranges calibrated on {row['calibration']}"
              for row in result["variants"].values() if row.get("calibration")]
    return "\n".join(lines) + "\n"
