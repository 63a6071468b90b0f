"""Run a chain of training stages from a pipeline file: each stage resumable, finished stages skipped, final models
optionally tracked and scored, a summary table at the end.

    python tools/pipeline.py --pipeline configs/quickstart/pipeline.yaml --device cpu
    python tools/pipeline.py --pipeline configs/paper/mixformerv2_b.yaml --until b_stage2b --no-evaluate
    python tools/pipeline.py --pipeline configs/paper/mixformerv2_s.yaml --only s_stage3 --fresh
    torchrun --nproc_per_node 8 tools/pipeline.py --pipeline configs/paper/mixformerv2_b.yaml

Stage NAME writes <output>/NAME/ (the file's output:, e.g. runs/paper/b_stage1/) exactly as tools/train.py
--output would, plus model_final.yaml (the final model's config) and pipeline_stage.json. Re-running the same
command skips the finished stages (logged) and resumes the one that was interrupted; a finished stage whose config
now differs stops the run with one line naming the key (--fresh trains the selected stages again). The table goes
to stdout and <output>/summary.json. Under torchrun nothing is evaluated; run the command again in one process.
Exit status: 0 done, 2 bad pipeline, config, data or checkpoint (one line on stderr), 3 stopped by the NaN guard,
130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import Config
from mixformerv2.tracking.scoring import track_and_score
from mixformerv2.train.distributed import env_dist_info
from mixformerv2.train.pipeline import Benchmark, PipelineStage, load_pipeline
from mixformerv2.train.pipeline_run import format_summary, run_pipeline
from mixformerv2.train.trainer import NAN_GUARD_STATUS, NonFiniteError
from mixformerv2.utils.cli import add_device_arg, add_overrides_arg, cli_main, emit, error_line, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.log import LogFileSwitch, setup_logging

logger = logging.getLogger("pipeline")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--pipeline", required=True, metavar="YAML", help="pipeline file, e.g. "
                        "configs/paper/mixformerv2_b.yaml")
    add_device_arg(parser)
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run only these stages")
    parser.add_argument("--until", default=None, metavar="NAME", help="stop after this stage")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the selected stages' folders first and train them from the start")
    evaluate = parser.add_mutually_exclusive_group()
    evaluate.add_argument("--evaluate", dest="evaluate", action="store_true", default=None,
                          help="track and score every selected stage's final model on the file's benchmark "
                               "(default: the stages marked evaluate: true)")
    evaluate.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="evaluate no stage")
    add_overrides_arg(parser, "override config keys of every stage by dotted name, after the pipeline file's own "
                              "set: lists; repeatable")
    parser.add_argument("--workers", type=int, default=1, help="tracker processes when evaluating")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def evaluate_stage(benchmark: Benchmark, device, workers: int, progress: bool, stage: PipelineStage, cfg: Config,
                   checkpoint: Path, results_root: Path) -> dict:
    """The pipeline's evaluator: track the stage's final model on the benchmark and score it."""
    return track_and_score(cfg, checkpoint, benchmark.dataset, benchmark.root, benchmark.split,
                           results_root=results_root, run_name=stage.name, device=str(device), workers=workers,
                           progress=progress)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pipeline = load_pipeline(args.pipeline)
    device = resolve_device(args.device)
    info = env_dist_info()
    level = logging.DEBUG if args.debug else logging.INFO
    setup_logging(level, info.rank, pipeline.output / "pipeline.log" if info.is_main else None)
    evaluator = None
    if pipeline.benchmark is not None:
        evaluator = partial(evaluate_stage, pipeline.benchmark, device, args.workers, not args.no_progress)
    try:
        with logging_redirect_tqdm():
            records = run_pipeline(pipeline, device=device, only=args.only, until=args.until, fresh=args.fresh,
                                   overrides=args.overrides, evaluate=args.evaluate, evaluator=evaluator,
                                   progress=not args.no_progress,
                                   log_to=LogFileSwitch() if info.is_main else None)
    except NonFiniteError as err:
        logger.error("%s", error_line(err))
        return NAN_GUARD_STATUS
    if info.is_main:
        emit(format_summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
