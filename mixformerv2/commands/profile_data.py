"""Training-data throughput: samples per second through the training loader.

    python tools/profile_data.py --config configs/mixformerv2_s.yaml --workers 2 --samples 2048 --json out.json

Reads the synthetic LaSOT + GOT-10k training set (``--data-root``, default ``data/synthetic``; make it with
``python tools/make_synthetic.py --out data/synthetic --preset quickstart``) at the config's crop sizes, sampler
mode and augmentation. The first batch (worker start-up) is not timed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from mixformerv2.config import load_config
from mixformerv2.data.pipeline import build_train_loader
from mixformerv2.data.registry import get_dataset
from mixformerv2.utils.cli import add_config_args, cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("profile_data")

# registry name -> folder under --data-root (the synthetic set has no official GOT-10k index files: train_full)
SYNTHETIC_DATASETS = {"lasot_train": "lasot", "got10k_train_full": "got10k"}
MAKE_SYNTHETIC = "python tools/make_synthetic.py --out data/synthetic --preset quickstart"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_config_args(parser)
    parser.add_argument("--data-root", default="data/synthetic", help="synthetic set root (default: data/synthetic)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default: 2)")
    parser.add_argument("--samples", type=int, default=2048, help="samples to time after the first batch")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    return parser.parse_args(argv)


def load_synthetic(root: Path) -> dict:
    """name -> reader of the synthetic training sets under ``root``; ``UserError`` with a hint when missing."""
    missing = [str(root / folder) for folder in SYNTHETIC_DATASETS.values() if not (root / folder).is_dir()]
    if missing:
        raise UserError(f"synthetic data not found ({', '.join(missing)}); generate it with: {MAKE_SYNTHETIC}")
    return {name: get_dataset(name, root=root / folder) for name, folder in SYNTHETIC_DATASETS.items()}


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the DataLoader workers once they exit)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(loader, samples: int) -> tuple[int, float, float]:
    """(samples timed, wall seconds, CPU seconds of all processes) after the first batch; stops at the first batch
    reaching ``samples``. CPU time is less sensitive than wall time to other load on the machine."""
    iterator = iter(loader)
    next(iterator)
    timed, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
    for batch in iterator:
        timed += batch["search_image"].shape[0]
        if timed >= samples:
            break
    seconds = time.perf_counter() - start
    del iterator  # shut the workers down so that their CPU time is counted
    return timed, seconds, _cpu_seconds() - cpu_start


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    cfg = load_config(args.config, args.overrides)
    datasets = load_synthetic(Path(args.data_root))
    cfg = replace(cfg, data=replace(cfg.data, train_datasets=tuple(datasets), train_ratios=(1.0,) * len(datasets),
                                    samples_per_epoch=args.samples + 2 * args.batch_size))
    loader = build_train_loader(cfg, datasets, batch_size=args.batch_size, num_workers=args.workers)
    timed, seconds, cpu_seconds = measure(loader, args.samples)
    result = {
        "samples_per_s": round(timed / seconds, 1),
        "workers": args.workers,
        "samples": timed,
        "template_size": cfg.model.template_size,
        "search_size": cfg.model.search_size,
    }
    logger.info("%s (sampler %s, batch %d, data %s); %.2f CPU ms per sample (all processes, workers' start-up "
                "included); skipped draws: %s", json.dumps(result), cfg.data.sampler_mode, args.batch_size,
                args.data_root, 1e3 * cpu_seconds / timed, dict(loader.counts))
    emit(json.dumps(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
