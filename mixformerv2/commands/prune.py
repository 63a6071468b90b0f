"""Remove faded layers from a MixFormerV2 checkpoint and renumber the others (official layout).

    python tools/prune.py --checkpoint runs/b_stage2/model_final.pth.tar --remove 0,3,6,9 --out runs/b_pruned.pth.tar

A layer is dropped only when the checkpoint records it as faded out to rate 0 (``fade_layers`` and ``remove_rate``,
written by the deep_to_shallow stage into its final model; a training state under ``checkpoints/`` is read through
its config's ``train.remove_layers`` and the epoch of the fade); ``--force`` drops any layer. With ``--config``
(the config the checkpoint was trained with) the result is checked to load into that model with the reduced depth.
"""
from __future__ import annotations

import argparse
import logging

from mixformerv2.config import load_config
from mixformerv2.train.pruning import prune_checkpoint
from mixformerv2.utils.cli import add_config_args, cli_main, make_parser
from mixformerv2.utils.log import setup_logging


def layer_list(text: str) -> list[int]:
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices, got {text!r}") from None
    if not layers or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative layer indices, got {text!r}")
    return layers


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--checkpoint", required=True, help="MixFormerV2 checkpoint ('net') to prune")
    p.add_argument("--remove", required=True, type=layer_list, help="block indices to drop, e.g. 0,3,6,9")
    p.add_argument("--out", required=True, help="checkpoint to write")
    add_config_args(p, required=False)  # the checkpoint's config: the pruned weights are checked against it
    p.add_argument("--force", action="store_true", help="drop layers even if they have not faded out")
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    cfg = load_config(args.config, args.overrides) if args.config else None
    prune_checkpoint(args.checkpoint, args.remove, args.out, cfg, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
