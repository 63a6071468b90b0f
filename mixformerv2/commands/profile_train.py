"""Training throughput of a stage config: samples/s, ms per iteration split into data wait, forward, backward and
optimizer, peak memory, the CPU's matmul features and thread counts; JSON output.

    python tools/profile_train.py --config configs/quickstart/stage1.yaml --device cpu --steps 20 --json out.json

Uses the config's datasets, loader workers, batch size per process, AMP and stage, for --steps timed iterations
after --warmup untimed ones (no gradient accumulation); nothing is written but the JSON (stdout and --json).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile

import torch

from mixformerv2.config import load_config
from mixformerv2.train.benchmark import benchmark_training
from mixformerv2.train.distributed import DistInfo
from mixformerv2.train.run import build_loaders, seed_all
from mixformerv2.train.stage import build_stage, list_stages
from mixformerv2.train.trainer import Trainer
from mixformerv2.utils.cli import add_config_args, add_device_arg, cli_main, emit, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("profile_train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_config_args(parser)
    add_device_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the main process")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations (default: 20)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed iterations first: worker start-up, caches (default: 3)")
    parser.add_argument("--json", default=None, help="also write the result here")
    return parser.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [*args.overrides, "train.grad_accum_steps=1"], stages=list_stages())
    device = resolve_device(args.device)
    seed_all(cfg.train.seed)
    stage = build_stage(cfg, device)
    train_loader, _ = build_loaders(cfg, DistInfo())
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(stage, cfg, train_loader, scratch, device=device, progress=False)
        result = benchmark_training(trainer, steps=args.steps, warmup=args.warmup)
    text = json.dumps({"config": args.config, **result}, indent=2)
    emit(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
