"""The quickstart: the whole MixFormerV2 pipeline on the synthetic benchmark, on a CPU, in minutes (``make demo``).

    python tools/quickstart.py                 # or: make demo
    python tools/quickstart.py --fresh         # start over (make demo FRESH=1)

Steps, each skipped (and logged as such) when its output exists, so a killed quickstart continues where it
stopped:
  1. data: the synthetic LaSOT- and GOT-10k-format benchmark (``--data``, default data/synthetic);
  2. training, configs/quickstart/pipeline.yaml: the MixViT teacher, stage 1 (dense-to-sparse), stage 2
     (deep-to-shallow: fade, prune), stage 2b (fine-tune), stage 3 (score head), into ``<out>/runs/<stage>/``
     (checkpoints, TensorBoard logs, metrics.jsonl);
  3. tracking every stage's final model and two baselines (hold the first box; the final model without online
     template update) on the synthetic LaSOT test split, into ``<out>/results/``;
  4. scoring with the LaSOT protocol, measuring size, FLOPs and ms/frame on this CPU, and writing
     ``<out>/report.md`` (table, success and precision plots), ``<out>/summary.json`` (every number, each step's
     wall time) and printing the table and the acceptance checks.
Exit status: 0 done (the checks are printed, not enforced; ``--strict``: 1 when one fails), 2 bad input (one
line on stderr), 3 stopped by the training NaN guard.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import load_config
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.synthetic import generate_all
from mixformerv2.data.synthetic.scene import TRUTH_FILE
from mixformerv2.evaluation.quickstart_report import (ReportRow, check_acceptance, format_checks,
                                                      models_to_profile, write_quickstart_report)
from mixformerv2.profiling import profile_trackers
from mixformerv2.tracking.baselines import HOLD_FIRST_BOX, no_online_update_overrides, run_baseline
from mixformerv2.tracking.scoring import track_and_score
from mixformerv2.train.pipeline import load_pipeline
from mixformerv2.train.pipeline_run import run_pipeline
from mixformerv2.train.trainer import NAN_GUARD_STATUS, NonFiniteError
from mixformerv2.utils.cli import add_device_arg, add_overrides_arg, cli_main, emit, error_line, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import LogFileSwitch, setup_logging

logger = logging.getLogger("quickstart")

PIPELINE = Path("configs/quickstart/pipeline.yaml")
DATASET = "lasot"  # the synthetic LaSOT-format test split, scored with the LaSOT protocol
OUTPUT_MARK = "quickstart.json"  # written into --out: --fresh deletes only a folder that has it
# (stage, report role, note); the report's rows in this order, then the two baselines
TRACKED = (("teacher", "teacher", "MixViT teacher, dense corner head"),
           ("stage1", "stage", "dense-to-sparse student (4 prediction tokens)"),
           ("stage2b", "stage", "deep-to-shallow: one layer pruned, fine-tuned"),
           ("stage3", "final", "final: score head and online template update"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--out", type=Path, default=Path("outputs/quickstart"),
                   help="output folder: runs/ (checkpoints, logs), results/, report.md, summary.json")
    p.add_argument("--data", type=Path, default=Path("data/synthetic"),
                   help="synthetic benchmark root (lasot/, got10k/); generated when missing")
    p.add_argument("--pipeline", type=Path, default=PIPELINE, help="the training pipeline file")
    p.add_argument("--fresh", action="store_true",
                   help="start over: delete --out first (the synthetic data is kept: it is deterministic)")
    p.add_argument("--workers", type=int, default=2, help="tracking worker processes")
    p.add_argument("--strict", action="store_true", help="exit status 1 when an acceptance check fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overrides_arg(p, "override keys of every training stage's config, e.g. data.samples_per_epoch=512 for a "
                         "shorter run (a finished stage whose config then differs is refused: use --fresh)")
    add_device_arg(p)
    return p.parse_args(argv)


def ensure_data(root: Path) -> bool:
    """Generate the quickstart preset under ``root`` unless both formats are there; True when generated."""
    present = [root / fmt / TRUTH_FILE for fmt in ("lasot", "got10k")]
    if all(path.is_file() for path in present):
        logger.info("data: skipped: %s holds the synthetic benchmark (%s)", root,
                    ", ".join(str(p) for p in present))
        return False
    logger.info("data: generating the synthetic benchmark into %s", root)
    generate_all(root, "quickstart", seed=0, formats=("lasot", "got10k"), workers=2)
    return True


def clear_output(out: Path) -> None:
    """``--fresh``: delete ``out`` when it is a quickstart folder (or empty); refuse anything else."""
    if not out.exists():
        return
    if any(out.iterdir()) and not (out / OUTPUT_MARK).is_file():
        raise UserError(f"--fresh: {out} is not a quickstart output folder (no {OUTPUT_MARK}); "
                         "not deleting it")
    logger.info("--fresh: deleting %s", out)
    shutil.rmtree(out)


def track_stage(name: str, stage_dir: Path, results: Path, data: Path, device, workers: int, progress: bool,
                overrides: tuple[str, ...] = (), run: str | None = None) -> tuple[str, str]:
    """Track the final model of one stage on the test split (finished sequences are skipped by the runner);
    returns the (config, checkpoint) it ran."""
    config, checkpoint = stage_dir / "model_final.yaml", stage_dir / "model_final.pth.tar"
    cfg = load_config(config, list(overrides))
    track_and_score(cfg, checkpoint, DATASET, root=str(data / "lasot"), results_root=results, run_name=run or name,
                    device=device, workers=workers, progress=progress)
    return str(config), str(checkpoint)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    if args.fresh:
        clear_output(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARK).write_text(json.dumps({"pipeline": str(args.pipeline), "data": str(args.data)}) + "\n")
    setup_logging(logging.DEBUG if args.debug else logging.INFO, 0, out / "quickstart.log")
    device = resolve_device(args.device or "cpu")
    progress = not args.no_progress
    steps: dict[str, float] = {}

    start = time.perf_counter()
    ensure_data(args.data)
    steps["data"] = time.perf_counter() - start

    pipeline = load_pipeline(args.pipeline)
    pipeline = dataclasses.replace(pipeline, output=out / "runs")
    roots = [f"data.roots.lasot={args.data / 'lasot'}", f"data.roots.got10k={args.data / 'got10k'}"]
    try:
        with logging_redirect_tqdm():
            records = run_pipeline(pipeline, device=device, overrides=[*roots, *args.overrides], evaluate=False,
                                   progress=progress, log_to=LogFileSwitch())
    except NonFiniteError as err:
        logger.error("%s", error_line(err))
        return NAN_GUARD_STATUS
    for record in records:
        steps[f"train_{record.name}"] = record.wall_time_s or 0.0
    walls = {record.name: record.wall_time_s for record in records}

    results = out / "results"
    rows = []
    start = time.perf_counter()
    with logging_redirect_tqdm():
        for stage, role, note in TRACKED:
            config, checkpoint = track_stage(stage, pipeline.stage_dir(stage), results, args.data, device,
                                             args.workers, progress)
            rows.append(ReportRow(stage, stage, role, config, checkpoint, wall_time_s=walls.get(stage), note=note))
        no_update = tuple(no_online_update_overrides(DATASET))
        config, checkpoint = track_stage("stage3", pipeline.stage_dir("stage3"), results, args.data, device,
                                         args.workers, progress, no_update, run="final_no_update")
        rows.append(ReportRow("final_no_update", "final_no_update", "baseline", config, checkpoint, no_update,
                              note="baseline: the final model without online template update"))
        reader = get_dataset(DATASET, root=str(args.data / "lasot"))
        run_baseline([reader[i] for i in range(len(reader))], DATASET, results)
        rows.append(ReportRow(HOLD_FIRST_BOX, HOLD_FIRST_BOX, "hold_first_box",
                              note="baseline: every frame is the initial box"))
    steps["tracking"] = time.perf_counter() - start

    start = time.perf_counter()
    speed = profile_trackers(models_to_profile(rows), dataset=DATASET)
    steps["speed"] = time.perf_counter() - start
    summary = write_quickstart_report(rows, DATASET, results, out, speed=speed, root=args.data / "lasot",
                                      steps=steps, title="MixFormerV2 quickstart on the synthetic benchmark")
    checks = check_acceptance(summary)
    emit((out / "report.md").read_text())
    emit(format_checks(checks))
    logger.info("quickstart done in %.0f s: %s", sum(steps.values()), out / "report.md")
    return 1 if args.strict and not all(check.passed for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
