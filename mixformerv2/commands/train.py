"""Train one stage (teacher, dense_to_sparse, ...) as its config says; the same command runs under torchrun.

    python tools/train.py --config configs/quickstart/teacher.yaml --device cpu --output runs/teacher
    torchrun --nproc_per_node 8 tools/train.py --config configs/paper/b_stage1.yaml --output runs/b_stage1
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 tools/train.py ...

The output folder (default runs/<config name>) holds config.yaml, checkpoints/, train.log, metrics.jsonl,
tensorboard/ and, at the end, model_final.pth.tar; only rank 0 writes. Re-running the same command resumes from
the newest checkpoint (--resume auto) and logs which one. Exit status: 0 done, 2 bad config, data or checkpoint
(one line on stderr), 3 stopped by the NaN guard, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import load_config
from mixformerv2.train.distributed import env_dist_info
from mixformerv2.train.run import run_training
from mixformerv2.train.stage import list_stages
from mixformerv2.train.trainer import NAN_GUARD_STATUS, NonFiniteError
from mixformerv2.utils.cli import add_config_args, add_device_arg, cli_main, error_line, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_config_args(parser)
    add_device_arg(parser)
    parser.add_argument("--resume", default="auto", metavar="auto|PATH|none",
                        help="auto: the newest checkpoint of the output folder if any (default); none: a fresh run "
                             "(refused if the folder holds checkpoints); or a checkpoint file")
    parser.add_argument("--output", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides, stages=list_stages())
    device = resolve_device(args.device)  # under torchrun, cuda becomes cuda:LOCAL_RANK
    info = env_dist_info()
    output = Path(args.output or Path("runs") / Path(args.config).stem)
    # only rank 0 writes: the other ranks log nowhere (their errors still reach stderr through cli_main)
    setup_logging(logging.DEBUG if args.debug else logging.INFO, info.rank,
                  output / "train.log" if info.is_main else None)
    try:
        with logging_redirect_tqdm():
            trainer = run_training(cfg, output, resume=args.resume, device=device, progress=not args.no_progress,
                                   config_file=args.config)
    except NonFiniteError as err:
        logger.error("%s", error_line(err))
        return NAN_GUARD_STATUS
    logger.info("done: %s", trainer.model_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
