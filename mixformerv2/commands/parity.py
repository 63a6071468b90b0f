"""Check our implementation against golden outputs of the official one.

    python tools/parity.py tests/data/golden/*.pt --fast-path

Prints the max abs error of every output; exit status 1 when any exceeds 1e-4 x max(1, |reference|).
"""
from __future__ import annotations

import logging
import sys

from mixformerv2.golden import check_golden_file
from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.log import setup_logging


@cli_main
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("files", nargs="+", help="golden .pt files")
    parser.add_argument("--fast-path", action="store_true", help="also check the cached template path")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    failed = 0
    for path in args.files:
        emit(path)
        for row in check_golden_file(path, args.fast_path):
            status = "ok" if row.ok else "FAIL"
            failed += not row.ok
            emit(f"  {row.name:<32} max abs err {row.max_abs_error:.3e}  tol {row.tolerance:.1e}  {status}")
    emit(f"{'FAILED' if failed else 'passed'}: {failed} output(s) over tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
