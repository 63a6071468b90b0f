"""Train one stage (teacher, dense_to_sparse, ...) as its config says; the same command runs under torchrun.

    python tools/train.py --config configs/quickstart/teacher.yaml --device cpu --output runs/teacher
    torchrun --nproc_per_node 8 tools/train.py --config configs/paper/b_stage1.yaml --output runs/b_stage1
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 tools/train.py ...

The output folder (default ``runs/<config name>``) holds config.yaml, checkpoints/, train.log, metrics.jsonl,
tensorboard/ and, at the end, model_final.pth.tar. Re-running the same command resumes from the newest
checkpoint (``--resume auto``). Exit status: 0 done, 2 bad config, data or checkpoint, 3 stopped by the NaN guard.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import ConfigError, load_config
from mixformerv2.data.sampling import SamplingError
from mixformerv2.models.checkpoint import CheckpointError
from mixformerv2.train.checkpointing import ResumeError
from mixformerv2.train.distributed import env_dist_info
from mixformerv2.train.metrics_log import setup_run_logging
from mixformerv2.train.run import run_training
from mixformerv2.train.trainer import NonFiniteError

logger = logging.getLogger("train")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="stage YAML")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.lr=1e-4 data.num_workers=2")
    p.add_argument("--resume", default="auto", metavar="auto|PATH|none",
                   help="auto: the newest checkpoint of the output folder if any (default); none: a fresh run "
                        "(refused if the folder holds checkpoints); or a checkpoint file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available); under torchrun each rank takes cuda:LOCAL_RANK")
    p.add_argument("--output", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    info = env_dist_info()
    output = Path(args.output or Path("runs") / Path(args.config).stem)
    setup_run_logging(output / "train.log" if info.is_main else None, info.rank)
    try:
        cfg = load_config(args.config, args.overrides)
        with logging_redirect_tqdm():
            trainer = run_training(cfg, output, resume=args.resume, device=args.device,
                                   progress=not args.no_progress)
    except (ConfigError, ResumeError, CheckpointError, SamplingError, OSError) as err:  # OSError: a data file
        logger.error("%s", err)
        return 2
    except NonFiniteError as err:
        logger.error("%s", err)
        return 3
    logger.info("done: %s", trainer.model_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
