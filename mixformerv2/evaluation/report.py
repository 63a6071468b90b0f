"""Presenting evaluation results: text tables, published numbers, JSON and success/precision plots.

Plots use matplotlib's object API with the Agg canvas directly, so no global backend is switched.
"""
from __future__ import annotations

import csv
import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from ..data.names import dataset_names
from ..utils.io import atomic_open, atomic_write_text
from .metrics import CENTER_THRESHOLDS, NORM_CENTER_THRESHOLDS
from .protocols import GOT10K_THRESHOLDS

logger = logging.getLogger(__name__)

#: Table columns (JSON key, header) for the OTB-style benchmarks and for GOT-10k val.
COLUMNS = (("auc", "AUC"), ("op50", "OP50"), ("op75", "OP75"), ("precision", "Prec"),
           ("norm_precision", "NormPrec"))
GOT10K_COLUMNS = (("ao", "AO"), ("sr50", "SR0.5"), ("sr75", "SR0.75"))


def columns_for(summary: dict) -> tuple[tuple[str, str], ...]:
    """The table columns that fit a tracker summary (GOT-10k style when it has ``ao``)."""
    return GOT10K_COLUMNS if "ao" in summary else COLUMNS


def load_paper_results(dataset: str | None = None) -> list[dict]:
    """Published numbers from the packaged ``paper_results.tsv``: dicts with ``tracker, dataset, metric, value
    (float, percent), source``, optionally only those of ``dataset`` (registry name), in file order. A name that is
    not a registered dataset raises ``ValueError`` (a misspelt benchmark must not silently show no published row)."""
    if dataset is not None and dataset not in dataset_names():
        raise ValueError(f"{dataset!r} is not a registered dataset (known: {', '.join(sorted(dataset_names()))})")
    text = resources.files("mixformerv2.evaluation").joinpath("paper_results.tsv").read_text(encoding="utf-8")
    rows = []
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        if dataset is None or row["dataset"] == dataset:
            rows.append({**row, "value": float(row["value"])})
    return rows


def paper_rows(dataset: str) -> dict[str, dict[str, float]]:
    """Published numbers of ``dataset`` grouped per tracker: ``{tracker: {metric: value}}`` (file order)."""
    grouped: dict[str, dict[str, float]] = {}
    for row in load_paper_results(dataset):
        grouped.setdefault(row["tracker"], {})[row["metric"]] = row["value"]
    return grouped


def format_table(trackers: dict[str, dict], paper: dict[str, dict[str, float]] | None = None,
                 title: str | None = None) -> str:
    """A plain-text table: one row per tracker, then published rows marked ``[paper]``; missing values are '-'.

    trackers: ``{name: summary}`` as returned by ``protocols.evaluate_tracker`` (values in percent).
    """
    sample = next(iter(trackers.values()), None) or next(iter((paper or {}).values()), {})
    columns = columns_for(sample)
    rows = [(name, summary) for name, summary in trackers.items()]
    rows += [(f"{name} [paper]", values) for name, values in (paper or {}).items()
             if any(key in values for key, _ in columns)]
    width = max([len("Tracker")] + [len(name) for name, _ in rows])
    lines = [] if title is None else [title]
    lines.append(f"{'Tracker':<{width}}" + "".join(f"{header:>10}" for _, header in columns))
    for name, values in rows:
        cells = "".join(f"{values[key]:>10.2f}" if key in values else f"{'-':>10}" for key, _ in columns)
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


#: The units of the scores in a JSON report (``evaluate_tracker``'s keys), written into it as ``"units"``.
SCORE_UNITS = {
    "percent (0-100)": ["auc", "op50", "op75", "precision", "norm_precision", "precision_auc",
                        "norm_precision_auc", "ao", "sr50", "sr75", "success_curve", "precision_curve",
                        "norm_precision_curve"],
    "frames": ["num_frames"],
    "success_curve x-axis": "overlap threshold, 0 to 1 (21 points; GOT-10k: 101)",
    "precision_curve x-axis": "centre error threshold in pixels, 0 to 50 (51 points)",
    "norm_precision_curve x-axis": "normalised centre error threshold, 0 to 0.5 (51 points)",
}


def write_json(path: str | Path, payload: dict) -> None:
    """Write a report as indented JSON (atomically)."""
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: Path) -> None:
    with atomic_open(path) as f:
        fig.savefig(f, format="png")


def plot_curves(trackers: dict[str, dict], out_dir: str | Path, dataset: str) -> list[Path]:
    """Write the success plot and, where present, the precision and normalised-precision plots as PNG files
    ``<out_dir>/<dataset>_{success,precision,norm_precision}.png``; legends carry AUC / precision / AO and trackers
    are sorted best first. Returns the files written."""
    out_dir = Path(out_dir)
    written = []
    got10k = any("ao" in s for s in trackers.values())
    plots = [("success", "success_curve", "auc" if not got10k else "ao", "Overlap threshold", "Success rate")]
    if not got10k:
        plots += [("precision", "precision_curve", "precision", "Location error threshold (px)", "Precision"),
                  ("norm_precision", "norm_precision_curve", "norm_precision",
                   "Normalised location error threshold", "Normalised precision")]
    for kind, curve_key, score_key, xlabel, ylabel in plots:
        fig, ax = _figure()
        for name, summary in sorted(trackers.items(), key=lambda item: -item[1][score_key]):
            curve = np.asarray(summary[curve_key]) / 100.0
            x = {"success": np.linspace(0.0, 1.0, len(curve)), "precision": CENTER_THRESHOLDS,
                 "norm_precision": NORM_CENTER_THRESHOLDS}[kind]
            if got10k:
                x = GOT10K_THRESHOLDS
            ax.plot(x, curve, linewidth=2, label=f"[{summary[score_key]:.1f}] {name}")
        ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, 1), xlim=(x[0], x[-1]),
               title=f"{kind.replace('_', ' ').capitalize()} plot on {dataset}")
        ax.grid(True, linestyle=":")
        ax.legend(loc="lower left" if kind == "success" else "lower right", fontsize=8)
        path = out_dir / f"{dataset}_{kind}.png"
        _save(fig, path)
        written.append(path)
    logger.info("wrote %d plots to %s", len(written), out_dir)
    return written
