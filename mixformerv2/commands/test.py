"""Run MixFormerV2 over a benchmark and write per-sequence result files.

    python tools/test.py --config configs/mixformerv2_b.yaml --checkpoint models/mixformerv2_base.pth.tar \\
        --dataset lasot --root data/lasot --workers 2

    python tools/test.py ... --backend auto     # the fastest backend and precision for this CPU (logged)
    python tools/test.py --config mixformerv2_b ... --device cuda --workers 16   # 2 workers on each of 8 GPUs
    python tools/test.py ... --shard 2/4        # machine 2 of 4, all into one (shared) results folder
    python tools/test.py --config mixformerv2_s --random-init ...   # try it without trained weights

``--device cuda`` spreads the workers round robin over the visible GPUs (``CUDA_VISIBLE_DEVICES``), ``cuda:N``
puts them all on one. ``--shard K/N`` tracks part K of a fixed partition of the sequences (balanced by frames; the
same on every machine): run the N parts into the same results folder (or copy the folders together), then
``tools/analyze.py`` scores the whole once every part is there; each part records itself in
``run.shard-K-of-N.json``, and parts run with other settings are refused. A run ends with one summary line:
sequences, frames, mean FPS, wall time.

Results go to ``<results>/<run>/<dataset>/`` (boxes at full precision, per-frame times, run.json); a re-run resumes,
and refuses a folder whose results were made with another checkpoint, other settings, backend or precision.
``run.json`` records what ran (cached or full forward, backend, precision) and the box rule: ``tools/analyze.py``
and ``tools/pack.py`` truncate these boxes toward zero by default, as the official runner's ``astype(int)`` files
were. Exit status: 0 done, 1 some sequences failed (each is named with its error; the others finish) or a worker
process died, 2 bad config, dataset, checkpoint, device or backend (the tracker cannot be built) or a results
folder of another run (one line on stderr; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from mixformerv2.config import load_config, shadowed_overrides
from mixformerv2.tracking.runner import WorkerDiedError, run_benchmark, settings_key
from mixformerv2.tracking.shards import parse_shard
from mixformerv2.utils.cli import (add_backend_args, add_checkpoint_args, add_config_args, add_device_arg,
                                   checkpoint_from_args, cli_main, make_parser)
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("test")


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    add_config_args(p)
    add_checkpoint_args(p)
    p.add_argument("--dataset", required=True, help="benchmark name known to the dataset registry, e.g. lasot")
    p.add_argument("--split", default=None, help="dataset split where the benchmark has several (e.g. test)")
    p.add_argument("--root", default=None, help="dataset root directory (default: the registry's default)")
    p.add_argument("--sequences", nargs="+", default=None, help="only these sequence names")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (each builds the model)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="track only part K of N of the sequences (a fixed partition balanced by frames), to split "
                        "a benchmark over N machines writing into one results folder")
    add_device_arg(p, workers=True)
    add_backend_args(p)
    p.add_argument("--results", default="results", help="results root folder")
    p.add_argument("--run", default=None, help="run name (default: the config file's stem)")
    p.add_argument("--no-cache", action="store_true",
                   help="full forward every frame (default: the cached template path where the model has one)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return p.parse_args(argv)


def load_sequences(dataset: str, root: str | None, split: str | None, names: list[str] | None):
    """Sequences of a benchmark from the dataset registry, optionally restricted to ``names``."""
    from mixformerv2.data.registry import get_dataset

    ds = get_dataset(dataset, root=root, split=split)
    if not names:
        return [ds[i] for i in range(len(ds))]
    unknown = sorted(set(names) - set(ds.sequence_names))
    if unknown:
        raise KeyError(f"{dataset}: unknown sequence(s): {', '.join(unknown)}")
    return [ds[name] for name in names]


def describe_settings(cfg, key: str) -> str:
    """The effective tracker settings of benchmark ``key``, those from its ``test.datasets`` entry starred."""
    settings, own = cfg.test.for_dataset(key), cfg.test.dataset_overrides(key)
    values = ", ".join(f"{f.name}={getattr(settings, f.name)}{'*' if f.name in own else ''}"
                       for f in fields(settings) if f.name != "datasets")
    return f"({values}; * = from test.datasets.{key}, which wins over test.*)"


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    device = resolve_device(args.device)
    shard = parse_shard(args.shard) if args.shard else None
    cfg = load_config(args.config, args.overrides)
    checkpoint = checkpoint_from_args(args, logger)
    key = settings_key(cfg, args.dataset, args.split)
    folder = f"{args.dataset}_{args.split}".lower() if args.split else key
    try:
        sequences = load_sequences(args.dataset, args.root, args.split, args.sequences)
    except (OSError, ValueError, KeyError) as err:
        logger.error("%s", err)
        return 2
    logger.info("%s: %d sequences, device %s; tracker settings %s", key, len(sequences), device,
                describe_settings(cfg, key))
    for message in shadowed_overrides(cfg, args.overrides, key):
        logger.warning("%s", message)
    try:  # RunMismatchError, TrackerSetupError: user errors, cli_main exits 2
        with logging_redirect_tqdm():
            summary = run_benchmark(cfg, checkpoint, sequences, key, results_root=args.results,
                                    run_name=args.run or Path(args.config).stem, device=device,
                                    workers=args.workers, cached=False if args.no_cache else None,
                                    progress=not args.no_progress, folder=folder, backend=args.backend,
                                    precision=args.precision, export_dir=args.export_dir,
                                    compile_step=args.compile, shard=shard)
    except WorkerDiedError as err:
        logger.error("%s", err)
        return 1
    logger.info("%s", summary.line())
    if summary.failed:
        logger.error("failed sequences:\n  %s", "\n  ".join(f"{k}: {v}" for k, v in sorted(summary.failed.items())))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
