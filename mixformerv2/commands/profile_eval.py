"""Time tools/analyze.py on a LaSOT-sized fake benchmark (280 sequences, 685,360 frames) written to a temp folder.

    python tools/profile_eval.py [--sequences 280] [--frames 685360] [--trackers 2] [--protocol pytracking]

The fake set has LaSOT's on-disk format (groundtruth.txt, full_occlusion.txt, out_of_view.txt, testing_set.txt) with
about 2.7% absent frames, and tab-separated integer result files like the official runner writes. Only the analyze
run is timed (a fresh interpreter, so imports count); writing the files is not.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixformerv2.utils.cli import cli_main, emit, make_parser
from mixformerv2.utils.log import setup_logging

ANALYZE = ["-m", "mixformerv2.commands.analyze"]  # the installed tool, wherever the package is


def write_fake_lasot(root: Path, results: Path, sequences: int, frames: int, trackers: int, seed: int = 0) -> None:
    """Fake LaSOT ground truth under ``root`` and ``trackers`` result folders ``T0, T1, ...`` under ``results``."""
    rng = np.random.default_rng(seed)
    lengths = rng.multinomial(frames - 2 * sequences, np.full(sequences, 1 / sequences)) + 2
    names = [f"class{i // 4}-{i % 4 + 1}" for i in range(sequences)]
    for name, n in zip(names, lengths):
        folder = root / name.rsplit("-", 1)[0] / name
        folder.mkdir(parents=True)
        steps = rng.normal(0, 3, (n, 2)).cumsum(axis=0)
        size = np.clip(rng.normal(60, 5, (n, 2)).round(), 5, None)
        gt = np.column_stack([np.clip(200 + steps, 1, None).round(), size])
        absent = rng.random(n) < 0.027
        absent[0] = False
        gt[absent & (rng.random(n) < 0.5)] = 0
        np.savetxt(folder / "groundtruth.txt", gt, fmt="%d", delimiter=",")
        (folder / "full_occlusion.txt").write_text(",".join("1" if a else "0" for a in absent))
        (folder / "out_of_view.txt").write_text(",".join("0" for _ in absent))
        for t in range(trackers):
            pred = np.clip(gt + rng.normal(0, 6 + 4 * t, gt.shape), 0, None)
            path = results / f"T{t}" / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, pred.astype(int), fmt="%d", delimiter="\t")
    (root / "testing_set.txt").write_text("".join(f"{n}\n" for n in names))


@cli_main
def main(argv=None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--sequences", type=int, default=280, help="synthetic sequences (default: 280, LaSOT test)")
    p.add_argument("--frames", type=int, default=685_360,
                   help="frames in all, spread over the sequences (default: 685,360, LaSOT test)")
    p.add_argument("--trackers", type=int, default=2, help="trackers to score (default: 2)")
    p.add_argument("--protocol", default="pytracking", help="analyze.py --protocol: pytracking (default) or toolkit")
    args = p.parse_args(argv)
    setup_logging(logging.DEBUG if args.debug else logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        root, results = Path(tmp) / "lasot", Path(tmp) / "results"
        start = time.perf_counter()
        write_fake_lasot(root, results, args.sequences, args.frames, args.trackers)
        emit(f"wrote {args.sequences} sequences, {args.frames} frames, {args.trackers} trackers "
             f"in {time.perf_counter() - start:.1f} s")
        command = [sys.executable, *ANALYZE, "--dataset", "lasot", "--root", str(root), "--results",
                   str(results), "--trackers", *[f"T{t}" for t in range(args.trackers)], "--protocol", args.protocol,
                   "--json", str(Path(tmp) / "report.json")]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        emit(done.stdout, end="")
        if done.returncode != 0:
            emit(done.stderr, file=sys.stderr)
            return done.returncode
    emit(f"analyze: {seconds:.2f} s for {args.sequences} sequences x {args.trackers} trackers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
