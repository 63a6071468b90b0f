"""Reproduce the paper's main table: track every benchmark with its official settings, score it, compare.

    python tools/reproduce.py --config configs/mixformerv2_b.yaml --checkpoint models/mixformerv2_base.pth.tar \\
        --datasets lasot lasot_ext tnl2k trackingnet uav123 --root-lasot data/lasot --workers 2

For each benchmark: ``tools/test.py`` logic (per-dataset search factor / update interval from the config, results
in ``<results>/<run>/<dataset>/``, resumable), then the ``tools/analyze.py`` logic (pytracking protocol, boxes
truncated toward zero as the official runner saved them; ``--full-precision`` scores and packs them as stored).
Benchmarks whose ground truth is withheld (TrackingNet, GOT-10k test) are packed into a server submission instead,
and the report says so. Each entry of the report records the box rule applied. The last table prints our
numbers beside the published ones with the difference; ``<results>/<run>/reproduce.json`` keeps everything.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import load_config
from mixformerv2.data.registry import get_dataset
from mixformerv2.evaluation.metrics import EvaluationError
from mixformerv2.evaluation.packing import EXPECTED_COUNTS, Expectation, PackError, pack
from mixformerv2.evaluation.protocols import eval_sequence
from mixformerv2.evaluation.report import SCORE_UNITS, paper_rows, write_json
from mixformerv2.evaluation.results import BoxPolicy, box_rule_for_folder
from mixformerv2.evaluation.scoring import score_runs
from mixformerv2.tracking.runner import run_benchmark
from mixformerv2.utils.cli import (add_checkpoint_args, add_config_args, add_device_arg, checkpoint_from_args, cli_main,
                                   emit, make_parser)
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("reproduce")

MAIN_TABLE = ("lasot", "lasot_ext", "tnl2k", "trackingnet", "uav123")
KNOWN = MAIN_TABLE + ("got10k_test", "got10k_val", "otb100", "nfs")
SERVER_KIND = {"trackingnet": "trackingnet", "got10k_test": "got10k"}
METRICS = ("auc", "norm_precision", "precision", "ao", "sr50", "sr75")


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_config_args(p)
    add_checkpoint_args(p)
    p.add_argument("--datasets", nargs="+", default=list(MAIN_TABLE), choices=KNOWN, metavar="DATASET",
                   help=f"benchmarks to track and score (default: the paper's main table, {' '.join(MAIN_TABLE)}; "
                        f"known: {', '.join(KNOWN)})")
    for name in KNOWN:
        p.add_argument(f"--root-{name.replace('_', '-')}", dest=f"root_{name}", default=None,
                       help=f"{name} root (default: the registry's root resolution)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (each builds the model)")
    add_device_arg(p, workers=True)
    p.add_argument("--results", default="results", help="results root folder (<results>/<run>/<dataset>/)")
    p.add_argument("--run", default=None, help="run name (default: the config file's stem)")
    p.add_argument("--paper-tracker", default=None,
                   help="row of paper_results.tsv to compare with (default: from the config: MixFormerV2-B/-S)")
    p.add_argument("--full-precision", action="store_true",
                   help="score and pack the boxes as stored (default: truncated toward zero, as the official "
                        "runner saves them and the paper's numbers were computed)")
    p.add_argument("--no-cache", action="store_true",
                   help="full forward every frame (default: the cached template path where the model has one)")
    return p.parse_args(argv)


def paper_tracker_for(cfg) -> str | None:
    """The published row matching a config: -B (8 layers, 288 px) or -S (4 layers, 224 px)."""
    if cfg.model.depth == 8 and cfg.model.search_size == 288:
        return "MixFormerV2-B"
    if cfg.model.depth == 4 and cfg.model.search_size == 224:
        return "MixFormerV2-S"
    return None


def evaluate_run(results_root: Path, run: str, dataset: str, sequences, policy: BoxPolicy) -> dict:
    """Score ``<results_root>/<run>/<dataset>`` with the pytracking protocol (the published numbers' rules) and the
    box rule of its ``run.json`` under ``policy``."""
    summaries, _ = score_runs(results_root, [run], dataset, [eval_sequence(s, dataset) for s in sequences], policy)
    return summaries[run]


def process_dataset(args, cfg, run: str, dataset: str) -> dict:
    """Track, then score or pack one benchmark; returns its entry of the report."""
    settings = cfg.test.for_dataset(dataset)
    entry = {"settings": {"search_factor": settings.search_factor, "update_interval": settings.update_interval,
                          "online_size": settings.online_size}}
    try:
        reader = get_dataset(dataset, root=getattr(args, f"root_{dataset}"))
        sequences = list(reader)
    except (OSError, ValueError, KeyError) as err:
        return {**entry, "status": "skipped", "reason": str(err)}
    logger.info("%s: %d sequences, search factor %.2f, update interval %d", dataset, len(sequences),
                settings.search_factor, settings.update_interval)
    with logging_redirect_tqdm():
        summary = run_benchmark(cfg, args.weights, sequences, dataset, results_root=args.results, run_name=run,
                                device=args.device, workers=args.workers,
                                cached=False if args.no_cache else None)
    policy = BoxPolicy(full_precision=args.full_precision)
    entry["box_rule"] = box_rule_for_folder(summary.results_dir, policy).as_dict()
    if summary.failed:
        return {**entry, "status": "failed", "reason": f"{len(summary.failed)} sequences failed",
                "failed": summary.failed}
    if dataset in SERVER_KIND:
        kind = SERVER_KIND[dataset]
        out = Path(args.results) / run / f"{dataset}_submission.zip"
        expectation = Expectation(len(sequences), tuple(s.name for s in sequences),
                                  {s.name: len(s) for s in sequences})
        if len(sequences) != EXPECTED_COUNTS[kind]:
            logger.warning("%s: %d sequences, the server expects %d", dataset, len(sequences), EXPECTED_COUNTS[kind])
        try:
            problems = pack(kind, summary.results_dir, out, expectation, policy=policy)
        except PackError as err:
            return {**entry, "status": "failed", "reason": str(err)}
        if problems:
            return {**entry, "status": "failed", "reason": "; ".join(problems)}
        return {**entry, "status": "packed", "submission": str(out),
                "reason": f"ground truth withheld: upload {out} to the {kind} server"}
    try:
        scores = evaluate_run(Path(args.results), run, dataset, sequences, policy)
    except EvaluationError as err:
        return {**entry, "status": "failed", "reason": str(err)}
    return {**entry, "status": "scored", "scores": {k: v for k, v in scores.items() if k in METRICS}}


def comparison_table(report: dict, paper_tracker: str | None) -> str:
    """One line per (dataset, metric): ours, paper, ours - paper; and one line per unscored dataset."""
    lines = [f"{'dataset':<12}{'metric':<16}{'ours':>8}{'paper':>8}{'diff':>8}"]
    for dataset, entry in report.items():
        if entry["status"] != "scored":
            lines.append(f"{dataset:<12}{entry['status']}: {entry.get('reason', '')}")
            continue
        paper = paper_rows(dataset).get(paper_tracker, {}) if paper_tracker else {}
        for metric, ours in entry["scores"].items():
            ref = paper.get(metric)
            ref_text = f"{ref:>8.1f}" if ref is not None else f"{'-':>8}"
            diff_text = f"{ours - ref:>+8.1f}" if ref is not None else f"{'':>8}"
            lines.append(f"{dataset:<12}{metric:<16}{ours:>8.1f}{ref_text}{diff_text}")
    return "\n".join(lines)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    args.device = resolve_device(args.device)
    cfg = load_config(args.config, args.overrides)
    args.weights = checkpoint_from_args(args, logger)
    run = args.run or Path(args.config).stem
    paper_tracker = args.paper_tracker or paper_tracker_for(cfg)
    report = {}
    for dataset in args.datasets:
        report[dataset] = process_dataset(args, cfg, run, dataset)  # RunMismatchError: cli_main, exit 2
    emit(f"\n{run} vs {paper_tracker or 'no published row'} (pytracking protocol"
         + (", full-precision boxes)" if args.full_precision else ", boxes truncated toward zero)"))
    emit(comparison_table(report, paper_tracker))
    write_json(Path(args.results) / run / "reproduce.json",
               {"units": SCORE_UNITS, "config": args.config, "checkpoint": args.checkpoint,
                "paper_tracker": paper_tracker,
                "datasets": report})
    return 1 if any(e["status"] in ("failed", "skipped") for e in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
