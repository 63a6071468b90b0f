"""Pack results for the GOT-10k / TrackingNet servers, or check a submission zip before uploading it.

    python tools/pack.py got10k --results results/mixformerv2_b/got10k_test --out got10k_submission.zip
    python tools/pack.py trackingnet --results results/mixformerv2_b/trackingnet --out trackingnet_submission.zip
    python tools/pack.py --check got10k_submission.zip [--kind got10k]

Boxes of our runner (a ``run.json`` in the results folder) are packed truncated toward zero to integers, as the
official runner and packing scripts write them; ``--full-precision`` packs them as stored. Results without our
``run.json`` are packed as stored. Each problem is printed on its own line; the exit status is 1 when the results or
the zip are not valid.
"""
from __future__ import annotations

import argparse
import logging
import sys
import zipfile

from mixformerv2.evaluation.metrics import EvaluationError
from mixformerv2.evaluation.packing import (KINDS, PackError, check_submission, default_expectation, pack,
                                           zip_kind)
from mixformerv2.evaluation.results import BoxPolicy
from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging

logger = logging.getLogger("pack")


def parse_args(argv=None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("kind", nargs="?", choices=KINDS, help="server to pack for")
    p.add_argument("--results", help="results folder of one benchmark (<sequence>.txt, <sequence>_time.txt)")
    p.add_argument("--out", help="submission zip to write")
    p.add_argument("--check", metavar="ZIP", help="validate this submission zip instead of packing")
    p.add_argument("--kind", dest="check_kind", choices=KINDS,
                   help="with --check: the server (default: read from the zip's layout, and said; a zip that shows "
                        "neither layout is an error)")
    p.add_argument("--root", help="dataset root: also check line counts against the test frames")
    p.add_argument("--expected-count", type=int, help="number of sequences expected (default: the test set)")
    p.add_argument("--force", action="store_true", help="write the zip even when the results have problems")
    p.add_argument("--full-precision", action="store_true",
                   help="pack our boxes as stored instead of truncated toward zero as the official scripts do")
    args = p.parse_args(argv)
    if args.check is None and (args.kind is None or not args.results or not args.out):
        p.error("give KIND --results DIR --out FILE.zip, or --check FILE.zip")
    return args


def frame_counts_from_dataset(kind: str, root: str) -> dict[str, int]:
    """Frames per test sequence read through the dataset registry."""
    from mixformerv2.data.registry import get_dataset

    ds = get_dataset("got10k_test" if kind == "got10k" else "trackingnet", root=root)
    return {ds[i].name: len(ds[i]) for i in range(len(ds))}


@cli_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    kind = args.check_kind or args.kind
    if args.check and kind is None:
        kind, reason = zip_kind(args.check)
        if kind is None and not zipfile.is_zipfile(args.check):  # a problem of the zip: reported as the checks do
            emit(f"{args.check}: {reason}")
            return 1
        if kind is None:
            raise UserError(f"{args.check}: cannot tell which server this submission is for: {reason}; give "
                            "--kind got10k or --kind trackingnet")
        emit(f"{args.check}: a {kind} submission, read from its contents ({reason})")
    counts = frame_counts_from_dataset(kind, args.root) if args.root else None
    expectation = default_expectation(kind, args.expected_count, counts)
    if args.check:
        problems = check_submission(args.check, kind, expectation)
    else:
        try:
            problems = pack(kind, args.results, args.out, expectation, force=args.force,
                            policy=BoxPolicy(full_precision=args.full_precision))
        except (PackError, EvaluationError) as err:  # the list of problems, one per line (a missing folder: cli_main)
            emit(err)
            return 1
    for problem in problems:
        emit(problem)
    target = args.check or args.out
    if problems:
        emit(f"{target}: {len(problems)} problem(s); the {kind} server would not score this submission as is")
        return 1
    emit(f"{target}: valid {kind} submission ({expectation.count} sequences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
