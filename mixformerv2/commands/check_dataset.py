"""Verify a benchmark copy on disk: missing sequences and frames, unreadable frames, bad ground-truth rows and length
mismatches. Prints a summary; exit status 1 when an error is found, 0 otherwise (warnings, such as ground-truth rows
with a non-positive size that the toolkits score as invalid frames, are listed but do not fail the check), 2 when
the dataset cannot be opened at all (missing root or list file: one line on stderr).

    python tools/check_dataset.py --dataset lasot --root /data/lasot [--check-images | --annotations-only]
"""
from __future__ import annotations

import logging
import sys

from mixformerv2.data.check import check_dataset
from mixformerv2.data.registry import get_dataset, list_datasets
from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.errors import UserError
from mixformerv2.utils.log import setup_logging


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--dataset", required=True, choices=list_datasets(), help="registered dataset name")
    parser.add_argument("--root", help="dataset root (default: $MIXFORMERV2_<NAME>_ROOT, paths.yaml, data/<name>)")
    parser.add_argument("--split", help="split, for datasets that have several (lasot, tnl2k, coco)")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--check-images", action="store_true", help="decode every frame (default: check existence)")
    frames.add_argument("--annotations-only", action="store_true",
                        help="check the annotation files only (a copy for scoring, without frames)")
    parser.add_argument("--examples", type=int, default=5, help="problems shown per kind")
    parser.add_argument("--verbose", action="store_true", help="log every problem as it is found")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose or args.debug else logging.WARNING)
    try:
        reader = get_dataset(args.dataset, root=args.root, split=args.split)
    except (FileNotFoundError, ValueError) as error:  # ValueError: the registry's (split, paths file)
        raise UserError(f"{args.dataset}: {error}") from error
    report = check_dataset(reader, check_images=args.check_images, progress=sys.stderr.isatty(),
                           check_frames=not args.annotations_only)
    emit(report.summary(max_examples=args.examples))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
