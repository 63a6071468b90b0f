"""Profile a model (parameters, FLOPs, latency of the full forward and the cached path), or write the speed table
that compares every backend for MixFormerV2-S and -B.

    python tools/profile_model.py --config configs/mixformerv2_s.yaml --device cpu --threads 2 --json out.json
    python tools/profile_model.py --table --device cpu --threads 1 --json speed.json --markdown speed.md
    python tools/profile_model.py --table --device cuda --json speed_gpu.json    # fp16, CUDA graphs; vs the paper

``--table``: for each ``--models`` entry (default S and B, random weights) and each backend/precision that can run
on this CPU (``mixformerv2.profiling.SPEED_VARIANTS``), p50/p95 ms of the network alone and of the whole tracker
step, FPS, speed-up against the fp32 full forward, GFLOPs and achieved GFLOP/s against the fp32/bf16 matmul peaks
measured in the same interleaved rounds; the CPU model, flags, threads, load and library versions head the table.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys

import torch

from mixformerv2.config import load_config
from mixformerv2.profiling import (CUDA_SPEED_VARIANTS, SPEED_VARIANTS, profile_model, speed_markdown,
                                   speed_table)
from mixformerv2.utils.cli import add_config_args, add_device_arg, cli_main, emit, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("profile_model")

DEFAULT_MODELS = ["S=mixformerv2_s", "B=mixformerv2_b"]  # released configs, by name


def parse_models(entries: list[str], overrides: list[str]) -> dict:
    """``NAME=YAML`` entries -> {name: ModelConfig}; ``UserError`` naming a malformed entry."""
    models = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--models {entry!r}: expected NAME=CONFIG.yaml, e.g. S=configs/mixformerv2_s.yaml")
        models[name] = load_config(path, overrides).model
    return models


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_config_args(parser, required=False)
    add_device_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs after warm-up (default 50; 30 per variant with --table)")
    parser.add_argument("--batch", type=int, default=1, help="images per forward call (default 1, as in tracking)")
    parser.add_argument("--table", action="store_true", help="the speed table of the backends (CPU)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, metavar="NAME=YAML",
                        help="--table: the models (default: S and B)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                        help="--table: the backends/precisions to measure (default: all that run here; CPU: "
                             f"{', '.join(SPEED_VARIANTS)}; CUDA: {', '.join(CUDA_SPEED_VARIANTS)})")
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while timing")
    parser.add_argument("--markdown", default=None, help="--table: write the Markdown table here")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    if not args.table and not args.config:
        parser.error("--config is required (or --table)")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.table:
        known = CUDA_SPEED_VARIANTS if device.type == "cuda" else SPEED_VARIANTS
        unknown = sorted(set(args.variants or ()) - set(known))
        if unknown:
            raise UserError(f"--variants {' '.join(unknown)}: not measured on {device.type} (there: "
                            f"{', '.join(known)})")
        logger.info("speed table: %d model(s), timing every variant in interleaved rounds (minutes on a CPU)",
                    len(args.models))
        result = speed_table(parse_models(args.models, args.overrides), args.variants, device,
                             runs=args.runs or 30, progress=not args.no_progress)
        command = "python tools/profile_model.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        markdown = speed_markdown(result, command)
        emit(markdown)
        if args.markdown:
            atomic_write_text(args.markdown, markdown)
    else:
        cfg = load_config(args.config, args.overrides)
        logger.info("%s: counting FLOPs and timing the full forward and the cached path on %s", args.config, device)
        result = {"config": args.config, **profile_model(cfg.model, device, args.runs or 50, args.batch,
                                                        progress=not args.no_progress)}
        emit(json.dumps(result, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
