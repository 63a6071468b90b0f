"""The backends against each other on one benchmark: AUC per backend and precision, and trajectory agreement.

Each variant ``(backend, precision)`` builds its own tracker and tracks the same sequences in this process, one
variant after the other. Per variant: the benchmark's AUC (its evaluation rules; boxes truncated toward zero, the
runner's ``box_rule``), the AUC difference to the reference (the first variant, normally torch fp32), the mean IoU
between its boxes and the reference's over all tracked frames (frame 0, the given box, left out), and the median
seconds of a tracker step. This is the accuracy cost of a backend or precision: the README's acceptance bound is
an AUC loss of at most 0.5 points.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence as Seq

import numpy as np

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


def _mean_iou(boxes: list[np.ndarray], reference: list[np.ndarray]) -> tuple[float, float]:
    """(mean over all frames but each first, lowest per-sequence mean) of the IoU between two trajectories."""
    per_sequence = [iou_continuous(a[1:], b[1:]) for a, b in zip(boxes, reference)]
    frames = np.concatenate(per_sequence) if per_sequence else np.zeros(0)
    lowest = min((float(np.mean(s)) for s in per_sequence if len(s)), default=float("nan"))
    return float(np.mean(frames)) if len(frames) else float("nan"), lowest


def compare_backends(cfg: Config, checkpoint: str | Path | None, sequences: Iterable[Sequence], dataset: str,
                     variants: Seq[Variant], device: str = "cpu", export_dir: str | Path | None = None) -> dict:
    """Track ``sequences`` (of benchmark ``dataset``, a settings key of ``cfg.test``) with every variant.

    Returns ``{"dataset", "sequences", "frames", "reference", "variants": {"<backend>_<precision>": {"backend",
    "precision", "requested", "auc", "auc_delta", "mean_iou_to_reference", "lowest_sequence_iou",
    "tracker_ms_p50"}}}``; AUC in percent (points), ``auc_delta`` = variant - reference. A variant that resolves to
    one already tracked (``auto``) is not tracked again; ``requested`` lists the variants that resolved to it.
    """
    sequences = list(sequences)
    rules = get_rules(dataset)
    truth = [eval_sequence(seq, dataset) for seq in sequences]
    out = {"dataset": dataset, "sequences": len(sequences), "frames": int(sum(len(s) for s in sequences)),
           "reference": None, "variants": {}}
    reference_boxes = None
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
        summary = evaluate_tracker(rules, truth, [[np.trunc(b)] for b in boxes])
        times = np.concatenate([r.times[1:] for r in results])
        if reference_boxes is None:
            reference_boxes, reference_auc, out["reference"] = boxes, summary["auc"], key
        mean_iou, lowest = _mean_iou(boxes, reference_boxes)
        out["variants"][key] = {
            "backend": tracker.backend, "precision": tracker.precision, "requested": [variant.backend],
            "auc": summary["auc"], "auc_delta": summary["auc"] - reference_auc,
            "mean_iou_to_reference": mean_iou, "lowest_sequence_iou": lowest,
            "tracker_ms_p50": float(np.median(times) * 1e3) if len(times) else float("nan"),
        }
        logger.info("%s: AUC %.2f (%+.2f), mean IoU to %s %.4f, %.1f ms per frame", key, summary["auc"],
                    summary["auc"] - reference_auc, out["reference"], mean_iou,
                    out["variants"][key]["tracker_ms_p50"])
    return out


def format_comparison(result: dict) -> str:
    """A Markdown table of ``compare_backends``' result."""
    lines = [f"{result['dataset']}: {result['sequences']} sequences, {result['frames']} frames; reference "
             f"{result['reference']}", "",
             "| backend | precision | AUC | ΔAUC | mean IoU to reference | lowest sequence IoU | ms/frame (p50) |",
             "|---|---|---|---|---|---|---|"]
    for row in result["variants"].values():
        lines.append(f"| {row['backend']} | {row['precision']} | {row['auc']:.2f} | {row['auc_delta']:+.2f} | "
                     f"{row['mean_iou_to_reference']:.4f} | {row['lowest_sequence_iou']:.4f} | "
                     f"{row['tracker_ms_p50']:.1f} |")
    return "\n".join(lines) + "\n"
