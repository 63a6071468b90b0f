"""Evaluate our tracker with the official VOT toolkit: prepare a workspace, then run evaluate / analysis / report.

    # a local VOT workspace from any sequences our readers load (here the synthetic LaSOT copy), and our tracker
    python tools/vot.py prepare --workspace vot_ws --dataset lasot --root data/synthetic/lasot \\
        --config configs/mixformerv2_s.yaml --checkpoint models/mixformerv2_small.pth.tar --device cuda
    # run the toolkit (its own environment: make vot-env), print accuracy / robustness / EAO
    python tools/vot.py evaluate --workspace vot_ws --tracker mixformerv2 --json vot_ws/summary.json

``prepare`` without ``--dataset`` only adds the tracker to an existing workspace, e.g. one made by
``vot initialize vot2022/shorttermbox --workspace W`` (official stacks). The local stack has a supervised experiment
(``baseline``: accuracy, robustness, failures, EAO) and an unsupervised one (``accuracy``); see
``mixformerv2.vot.workspace``. ``evaluate`` fails (exit status 2, one line) when the tracker crashed or timed out
inside the toolkit, naming the sequence and quoting the tracker's own error; it never prints a score then.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path

from mixformerv2.utils.cli import add_config_args, add_device_arg, cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging
from mixformerv2.vot import toolkit
from mixformerv2.vot import workspace as vot_workspace

logger = logging.getLogger("vot")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="write a workspace (with --dataset) and the tracker entry")
    prepare.add_argument("--workspace", required=True, help="VOT workspace folder (created when needed)")
    prepare.add_argument("--dataset", default=None,
                         help="convert this registered dataset into the workspace's local stack, e.g. lasot")
    prepare.add_argument("--root", default=None, help="dataset root (default: the registry's root resolution)")
    prepare.add_argument("--split", default=None, help="dataset split where the benchmark has several")
    prepare.add_argument("--sequences", nargs="+", default=None, help="only these sequence names")
    prepare.add_argument("--limit", type=int, default=None, help="only the first N sequences")
    prepare.add_argument("--eao-range", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                         help="EAO interval in frames (default: 1 to the longest sequence less one)")
    add_config_args(prepare)
    prepare.add_argument("--checkpoint", required=True, help="official-format checkpoint")
    add_device_arg(prepare)
    prepare.add_argument("--tracker", default="mixformerv2", help="tracker name in trackers.ini")
    prepare.add_argument("--timeout", type=int, default=vot_workspace.DEFAULT_TIMEOUT_S,
                         help="seconds the toolkit waits for one tracker reply (the start-up is not timed)")
    prepare.add_argument("--threads", type=int, default=None, help="CPU threads of the tracker process")
    prepare.add_argument("--no-cache", action="store_true", help="full forward every frame")

    evaluate = commands.add_parser("evaluate", help="vot evaluate + analysis + report, then the numbers")
    evaluate.add_argument("--workspace", required=True, help="VOT workspace folder")
    evaluate.add_argument("--tracker", default="mixformerv2", help="tracker name in trackers.ini")
    evaluate.add_argument("--experiments", nargs="+", default=None,
                          help="evaluate only these experiments of the stack (the analysis needs results of all)")
    evaluate.add_argument("--force", action="store_true", help="re-run sequences that already have results")
    evaluate.add_argument("--toolkit-env", default=toolkit.DEFAULT_ENV,
                          help=f"the toolkit's virtual environment (default: {toolkit.DEFAULT_ENV}, make vot-env)")
    evaluate.add_argument("--no-report", action="store_true", help="skip vot report (HTML)")
    evaluate.add_argument("--json", default=None, help="also write the numbers as JSON here")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> None:
    from mixformerv2.data.registry import get_dataset

    workspace = Path(args.workspace)
    if args.dataset:
        reader = get_dataset(args.dataset, root=args.root, split=args.split)
        names = list(reader.sequence_names)
        if args.sequences:
            unknown = sorted(set(args.sequences) - set(names))
            if unknown:
                raise UserError(f"--sequences: {unknown} are not in {args.dataset} (it has {len(names)} sequences)")
            names = [name for name in names if name in set(args.sequences)]
        names = names[:args.limit] if args.limit else names
        sequences = (reader[name] for name in names)
        vot_workspace.create_workspace(workspace, sequences, f"MixFormerV2 local stack: {args.dataset}",
                                       tuple(args.eao_range) if args.eao_range else None)
    elif not (workspace / "config.yaml").is_file():
        raise UserError(f"{workspace}: not a VOT workspace (no config.yaml); give --dataset to make one, or run "
                        "vot initialize <stack> --workspace there first")
    argv = vot_workspace.server_argv(args.config, args.checkpoint, args.device, args.overrides,
                                     no_cache=args.no_cache, threads=args.threads)
    section = vot_workspace.tracker_section(argv, paths=vot_workspace.import_roots(), timeout_s=args.timeout,
                                            label=f"MixFormerV2 ({Path(args.checkpoint).name})")
    files = [Path(args.config).absolute(), Path(args.checkpoint).absolute()]
    vot_workspace.register_tracker(workspace, args.tracker, section, files)
    emit(f"{workspace / vot_workspace.TRACKERS_FILE}: tracker {args.tracker} runs "
         f"{shlex.join([section['python'], '-m', 'mixformerv2.vot', *argv])}")


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """One line per experiment: ``baseline  accuracy 0.6123  robustness 1.5000  eao 0.3210``."""
    width = max(len(name) for name in summary) if summary else 0
    return "\n".join(f"{name:<{width}}  " + "  ".join(f"{key} {value:.4f}" for key, value in values.items())
                     for name, values in summary.items())


def evaluate(args: argparse.Namespace) -> None:
    workspace = Path(args.workspace)
    if not (workspace / "config.yaml").is_file():
        raise UserError(f"{workspace}: not a VOT workspace (no config.yaml); run tools/vot.py prepare first")
    vot = toolkit.find_toolkit(args.toolkit_env)
    start = time.perf_counter()
    toolkit.evaluate(vot, workspace, args.tracker, args.experiments, force=args.force)
    name = f"{args.tracker}-{time.strftime('%Y%m%d-%H%M%S')}"
    analysis = toolkit.analyse(vot, workspace, args.tracker, name)
    summary = toolkit.summarize(analysis, args.tracker)
    if args.experiments:
        summary = {k: v for k, v in summary.items() if k in args.experiments}
    report = None if args.no_report else toolkit.report(vot, workspace, args.tracker, name)
    for experiment, values in summary.items():
        if any(math.isnan(v) for v in values.values()):
            logger.warning("%s: a measure is NaN (an EAO range longer than every run of the tracker gives NaN; "
                           "set it with prepare --eao-range)", experiment)
    emit(format_summary(summary))
    emit(f"analysis: {workspace / 'analysis' / (name + '.json')}" + (f", report: {report}" if report else "")
         + f" ({time.perf_counter() - start:.0f} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "tracker": args.tracker, "workspace": str(workspace), "toolkit": analysis.get("toolkit"),
            "analysis": str(workspace / "analysis" / f"{name}.json"), "results": summary},
            indent=2, allow_nan=True) + "\n")


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    if args.command == "prepare":
        prepare(args)
    else:
        evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
