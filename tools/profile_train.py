"""Training throughput of a stage config: samples/s, ms per iteration split into data wait, forward, backward and
optimizer, peak memory; JSON output.

    python tools/profile_train.py --config configs/quickstart/stage1.yaml --device cpu --steps 20 --json out.json

Uses the config's datasets, loader workers, batch size, AMP and stage, for ``--steps`` timed iterations after
``--warmup`` untimed ones; nothing is written but the JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile

import torch

from mixformerv2.config import ConfigError, load_config
from mixformerv2.data.sampling import SamplingError
from mixformerv2.models.checkpoint import CheckpointError
from mixformerv2.train.benchmark import benchmark_training
from mixformerv2.train.distributed import DistInfo
from mixformerv2.train.run import build_loaders, seed_all
from mixformerv2.train.stage import build_stage
from mixformerv2.train.trainer import Trainer
from mixformerv2.utils.io import atomic_write_text

logger = logging.getLogger("profile_train")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="stage YAML")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the main process")
    p.add_argument("--steps", type=int, default=20, help="timed iterations")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (worker start-up, caches)")
    p.add_argument("--json", default=None, help="write the result here as JSON")
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, [*args.overrides, "train.grad_accum_steps=1"])
        seed_all(cfg.train.seed)
        device = torch.device(args.device)
        stage = build_stage(cfg, device)
        train_loader, _ = build_loaders(cfg, DistInfo())
        with tempfile.TemporaryDirectory() as scratch:
            result = benchmark_training(Trainer(stage, cfg, train_loader, scratch, device=device, progress=False),
                                        steps=args.steps, warmup=args.warmup)
    except (ConfigError, CheckpointError, SamplingError, OSError, ValueError) as err:
        logger.error("%s", err)
        return 2
    text = json.dumps({"config": args.config, **result}, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
