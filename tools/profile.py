"""Profile a model: parameters, FLOPs, latency of the full forward and of the cached template path.

    python tools/profile.py --config configs/mixformerv2_s.yaml --device cpu --threads 2 --json out.json
"""
import argparse
import json
import os
import sys

# This file's name shadows the standard library's `profile`, which torch imports (through cProfile): take the
# script's own folder off the module search path before importing anything else.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import torch  # noqa: E402

from mixformerv2.config import load_config  # noqa: E402
from mixformerv2.profiling import profile_model  # noqa: E402
from mixformerv2.utils.io import atomic_write_text  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs after warm-up (median is reported)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.set)
    result = {"config": args.config, **profile_model(cfg.model, args.device, args.runs, args.batch)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
