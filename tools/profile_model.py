"""Profile a model: parameters, FLOPs, latency of the full forward and of the cached template path.

    python tools/profile_model.py --config configs/mixformerv2_s.yaml --device cpu --threads 2 --json out.json
"""
from __future__ import annotations

import json
import logging
import sys

import torch

from mixformerv2.config import load_config
from mixformerv2.profiling import profile_model
from mixformerv2.utils.cli import add_config_args, add_device_arg, cli_main, make_parser
from mixformerv2.utils.device import resolve_device
from mixformerv2.utils.io import atomic_write_text
from mixformerv2.utils.log import setup_logging


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_config_args(parser)
    add_device_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs after warm-up (median is reported)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    result = {"config": args.config, **profile_model(cfg.model, device, args.runs, args.batch)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
