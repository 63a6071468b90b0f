"""Score tracker result files on a benchmark with the official rules, print a table, write JSON and plots.

    python tools/analyze.py --dataset lasot --root data/lasot --results results --trackers mixformerv2_b OSTrack \\
        [--json report.json] [--plots plots/] [--paper] [--allow-incomplete] [--protocol pytracking|toolkit]

Result files: ``<results>/<tracker>/<sequence>.txt`` or ``<results>/<tracker>/<dataset>/<sequence>.txt`` (GOT-10k
also ``<sequence>/<sequence>_001.txt``), x,y,w,h per frame in the benchmark's own coordinates, separated by commas,
tabs or spaces. ``--protocol pytracking`` (default) reproduces the pytracking/MixFormerV2 analysis that produced the
published numbers; ``--protocol toolkit`` the official LaSOT/TNL2K MATLAB toolkits (OTB-100, UAV123, NfS: the got10k
toolkit). GOT-10k val is scored as the got10k toolkit does (AO, SR0.5, SR0.75). Exit status 2 when the dataset
cannot be read (one line on stderr), 1 when results are missing or malformed.

Box rule: results of our runner (a ``run.json`` beside them) are scored truncated toward zero, exactly as the
official pipeline saved and scored its boxes (``astype(int)``), so the numbers compare with the paper;
``--full-precision`` scores them as stored instead. Raw results of other trackers (no ``run.json``) are scored as
stored; ``--truncate-int`` truncates those too. The JSON report records the rule applied to each tracker.
"""
from __future__ import annotations

import argparse
import logging
import sys

from mixformerv2.evaluation.metrics import EvaluationError
from mixformerv2.evaluation.protocols import PROTOCOLS, VALIDITY_RULES
from mixformerv2.evaluation.report import (SCORE_UNITS, format_table, load_paper_results, paper_rows, plot_curves,
                                          write_json)
from mixformerv2.evaluation.results import BoxPolicy, box_rules, collect_results
from mixformerv2.evaluation.scoring import load_eval_sequences, score_trackers
from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("analyze")

_MAX_LISTED = 10


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--dataset", required=True, help="registry name: lasot, lasot_ext, tnl2k, got10k_val, uav123, "
                                                     "otb100, nfs")
    p.add_argument("--root", help="dataset root (default: the registry's root resolution)")
    p.add_argument("--results", required=True, help="folder holding one sub-folder per tracker")
    p.add_argument("--trackers", nargs="+", required=True, help="tracker folder names")
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--plots", help="write success/precision plots (PNG) into this folder")
    p.add_argument("--paper", action="store_true", help="add the published numbers (paper_results.tsv)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="score over the sequences every tracker has, instead of failing on missing files")
    p.add_argument("--protocol", choices=PROTOCOLS, default="pytracking",
                   help="pytracking (default): the analysis behind the published MixFormerV2 numbers; toolkit: the "
                        "benchmark's official toolkit (LaSOT/TNL2K MATLAB, got10k for OTB-100, UAV123, NfS)")
    p.add_argument("--validity", choices=VALIDITY_RULES, default="wh",
                   help="pytracking GT validity: wh (MixFormerV2/OSTrack, default) or xywh (pytracking HEAD)")
    p.add_argument("--exclude-invalid-frames", action="store_true",
                   help="pytracking: divide by the valid frames instead of all frames")
    p.add_argument("--full-precision", action="store_true",
                   help="score our results (folders with run.json) as stored, not truncated toward zero as the "
                        "official pipeline does (default: truncated, comparable with the paper)")
    p.add_argument("--truncate-int", action="store_true",
                   help="also truncate raw results of other trackers (no run.json) toward zero, as the official "
                        "runner saves them (default: scored as stored)")
    p.add_argument("--absent-dir", help="toolkit protocol: folder of the toolkit's absent flags <seq>.txt "
                                        "(e.g. TNL2K_evaluation_toolkit/annos/absent)")
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.WARNING)
    try:
        sequences = load_eval_sequences(args.dataset, args.root, args.absent_dir)
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise UserError(err.args[0] if isinstance(err, KeyError) and err.args else str(err)) from err
    names = [s.name for s in sequences]
    try:
        applied = box_rules(args.results, args.trackers, args.dataset,
                            BoxPolicy(full_precision=args.full_precision, truncate_raw=args.truncate_int))
    except EvaluationError as err:
        emit(f"error: {err}", file=sys.stderr)
        return 1
    found, problems = collect_results(args.results, args.trackers, args.dataset, names, applied)
    bad = {t: p for t, p in problems.items() if p}
    if bad and not args.allow_incomplete:
        for tracker, per_seq in bad.items():
            emit(f"error: {tracker}: {len(per_seq)} of {len(names)} sequences have missing or malformed results",
                 file=sys.stderr)
            for message in list(per_seq.values())[:_MAX_LISTED]:
                emit(f"  {message}", file=sys.stderr)
        return 1
    complete = [s for s in sequences if all(s.name in found[t] for t in args.trackers)]
    if not complete:
        emit("error: no sequence has results for every tracker", file=sys.stderr)
        return 1
    try:
        summaries = score_trackers(args.results, args.trackers, args.dataset, complete, found, args.protocol,
                                   args.validity, args.exclude_invalid_frames)
    except EvaluationError as err:
        emit(f"error: {err}", file=sys.stderr)
        return 1
    paper = paper_rows(args.dataset) if args.paper else None
    title = f"{args.dataset} ({len(complete)} sequences, protocol {args.protocol})"
    emit(format_table(summaries, paper, title))
    if len(complete) < len(sequences):
        emit(f"{len(sequences) - len(complete)} of {len(sequences)} sequences left out (missing or malformed "
             "results): " + ", ".join(f"{t}: {len(p)} missing" for t, p in bad.items()))
    if args.json:
        payload = {"units": SCORE_UNITS, "dataset": args.dataset, "protocol": args.protocol,
                   "num_sequences": len(complete),
                   "num_sequences_total": len(sequences),
                   "missing": {t: sorted(p) for t, p in problems.items()},
                   "box_rules": {t: rule.as_dict() for t, rule in applied.items()}, "trackers": summaries}
        if paper is not None:
            payload["paper"] = paper
            payload["paper_sources"] = [{k: row[k] for k in ("tracker", "metric", "source")}
                                        for row in load_paper_results(args.dataset)]
        write_json(args.json, payload)
    if args.plots:
        plot_curves(summaries, args.plots, args.dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
