"""Write a trivial baseline's results in the runner's layout, for tools/analyze.py to score beside real runs.

    python tools/baseline.py --dataset lasot --root data/synthetic/lasot --results results
    python tools/analyze.py --dataset lasot --root data/synthetic/lasot --results results \\
        --trackers hold_first_box quickstart_final

``hold_first_box`` (the only baseline so far): every frame's box is the initial box. Results go to
``<results>/<run>/<dataset>/`` with a ``run.json`` naming the baseline; a re-run skips complete sequences.
The other quickstart baseline, a model without online template update, is a normal ``tools/test.py`` run with
``--set test.datasets.<dataset>.update_interval=2147483647`` (``tracking.baselines.no_online_update_overrides``).
Exit status 2 when the dataset cannot be read or the folder holds another run's results (one line on stderr).
"""
from __future__ import annotations

import argparse
import logging
import sys

from mixformerv2.data.registry import get_dataset
from mixformerv2.tracking.baselines import BASELINES, HOLD_FIRST_BOX, run_baseline
from mixformerv2.utils.cli import cli_main, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("baseline")


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--dataset", required=True, help="benchmark name known to the dataset registry, e.g. lasot")
    p.add_argument("--split", default=None, help="dataset split where the benchmark has several")
    p.add_argument("--root", default=None, help="dataset root directory (default: the registry's default)")
    p.add_argument("--baseline", default=HOLD_FIRST_BOX, choices=sorted(BASELINES),
                   help="which baseline to write (hold_first_box: every frame is the initial box)")
    p.add_argument("--results", default="results", help="results root folder")
    p.add_argument("--run", default=None, help="run name (default: the baseline's name)")
    return p.parse_args(argv)


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    try:
        sequences = list(get_dataset(args.dataset, root=args.root, split=args.split))
    except (KeyError, ValueError) as err:
        raise UserError(str(err)) from err
    folder = f"{args.dataset}_{args.split}".lower() if args.split else args.dataset.lower()
    summary = run_baseline(sequences, folder, args.results, args.run or args.baseline, baseline=args.baseline)
    logger.info("%s: %d written, %d already complete", summary.results_dir, len(summary.done), len(summary.skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
