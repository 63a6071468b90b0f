"""Write synthetic tracking videos in the LaSOT and GOT-10k on-disk formats.

    python tools/make_synthetic.py --out data/synthetic --preset quickstart --seed 0 --workers 2

writes ``<out>/lasot/...`` and ``<out>/got10k/...`` (see the ``mixformerv2.data.synthetic`` package docstring for
the exact layout).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace

from mixformerv2.data.synthetic import PRESETS, generate_all
from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--out", default="data/synthetic", help="output folder (default: data/synthetic)")
    parser.add_argument("--preset", default="quickstart", choices=sorted(PRESETS), help="dataset size")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: 0)")
    parser.add_argument("--formats", nargs="+", default=["lasot", "got10k"], choices=["lasot", "got10k"],
                        help="benchmark layouts to write (default: both)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default: 2)")
    parser.add_argument("--size", default=None, metavar="WxH", help="override the preset's frame size, e.g. 320x240")
    return parser.parse_args(argv)


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> (320, 240); ``UserError`` naming ``--size`` otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 320x240")
    return int(parts[0]), int(parts[1])


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    scene = PRESETS[args.preset].scene
    if args.size:
        width, height = parse_size(args.size)
        scene = replace(scene, width=width, height=height)
    start = time.perf_counter()
    truths = generate_all(args.out, args.preset, seed=args.seed, formats=tuple(args.formats), workers=args.workers,
                          scene=scene)
    seconds = time.perf_counter() - start
    for dataset, sequences in truths.items():
        splits: dict[str, int] = {}
        frames = 0
        for truth in sequences.values():
            splits[truth.split] = splits.get(truth.split, 0) + 1
            frames += len(truth.box_xywh)
        counts = ", ".join(f"{split} {count}" for split, count in splits.items())
        emit(f"{os.path.join(args.out, dataset)}: {len(sequences)} sequences ({counts}), {frames} frames")
    emit(f"done in {seconds:.1f} s (preset {args.preset}, seed {args.seed}, {scene.width}x{scene.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
