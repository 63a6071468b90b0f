"""Reading tracker result files.

A result file holds one ``x, y, w, h`` row per frame, separated by commas, tabs or spaces (pytracking writes tabs,
the toolkits commas, MATLAB trackers spaces). Layouts accepted under a results directory ``DIR``:

* ``DIR/<tracker>/<sequence>.txt`` (pytracking, toolkits);
* ``DIR/<tracker>/<dataset>/<sequence>.txt`` (this package's test runner);
* ``DIR/<tracker>[/<dataset>]/<sequence>/<sequence>_001.txt``, ``_002.txt``, ... (got10k toolkit runs).

A missing or malformed file raises :class:`ResultFileError` naming the sequence and the file; NaN, infinite values
and negative sizes raise naming the file and the 1-based row.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from .metrics import EvaluationError

_SEPARATORS = re.compile(r"[,\t ]+")


class ResultFileError(EvaluationError):
    """A result file that is missing or cannot be trusted; ``sequence`` and ``path`` say which."""

    def __init__(self, message: str, *, sequence: str | None = None, path: str | Path | None = None):
        self.sequence = sequence
        self.path = Path(path) if path is not None else None
        super().__init__(message)


def read_result_file(path: str | Path, sequence: str | None = None) -> np.ndarray:
    """Read one result file: (N, 4) float64 boxes ``x, y, w, h`` exactly as written.

    Blank lines (and a trailing newline) are ignored. Raises :class:`ResultFileError` when the file is missing or
    empty, a row does not hold exactly four numbers, a value is NaN or infinite, or a width/height is negative.
    """
    path = Path(path)
    who = f"sequence {sequence}: " if sequence else ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ResultFileError(f"{who}{path}: result file is missing", sequence=sequence, path=path) from None
    if not text.strip():
        raise ResultFileError(f"{who}{path}: result file is empty", sequence=sequence, path=path)
    try:
        boxes = np.loadtxt(io.StringIO(text.replace(",", " ")), dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        boxes = None
    if boxes is None or boxes.shape[1] != 4:
        _raise_bad_row(path, text, who, sequence)
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ResultFileError(f"{who}{path}: row {row + 1} is not finite: {_row_text(text, row)!r}",
                              sequence=sequence, path=path)
    negative = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise ResultFileError(f"{who}{path}: row {row + 1} has a negative width or height: "
                              f"{_row_text(text, row)!r}",
                              sequence=sequence, path=path)
    return boxes


def _row_text(text: str, row: int) -> str:
    """The stripped text of non-blank line ``row`` (0-based)."""
    return [line for line in text.splitlines() if line.strip()][row].strip()


def _raise_bad_row(path: Path, text: str, who: str, sequence: str | None):
    """Find the first malformed row (slow path behind ``np.loadtxt``) and raise naming it."""
    for number, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
        fields = _SEPARATORS.split(line.strip(" \t\r"))
        if len(fields) != 4 or ",," in line.replace(" ", ""):
            raise ResultFileError(f"{who}{path}: row {number} does not hold 4 values x,y,w,h: {line.strip()!r}",
                                  sequence=sequence, path=path)
        for field in fields:
            try:
                float(field)
            except ValueError:
                raise ResultFileError(f"{who}{path}: row {number}: {field!r} is not a number",
                                      sequence=sequence, path=path) from None
    raise ResultFileError(f"{who}{path}: cannot be read as rows of x,y,w,h", sequence=sequence, path=path)


def candidate_paths(results_dir: str | Path, tracker: str, dataset: str, sequence: str) -> list[Path]:
    """Single-file locations of ``sequence``'s results, in the order they are tried."""
    base = Path(results_dir) / tracker
    names = [sequence]
    if dataset == "uav123":  # pytracking names UAV123 results uav_<seq>.txt, the got10k toolkit <seq>.txt
        names.append(sequence[4:] if sequence.startswith("uav_") else f"uav_{sequence}")
    return [folder / f"{name}.txt" for name in names for folder in (base, base / dataset)]


def find_result_files(results_dir: str | Path, tracker: str, dataset: str, sequence: str) -> list[Path]:
    """The result file(s) of one sequence: a single file (see :func:`candidate_paths`) or, failing that, the
    got10k-style runs ``<sequence>/<sequence>_NNN.txt`` (sorted). Raises :class:`ResultFileError` naming the
    sequence and every place looked at when none exists."""
    tried = candidate_paths(results_dir, tracker, dataset, sequence)
    for path in tried:
        if path.is_file():
            return [path]
    base = Path(results_dir) / tracker
    for folder in (base / sequence, base / dataset / sequence):
        runs = sorted(p for p in folder.glob(f"{sequence}_*.txt") if re.fullmatch(r"\d+", p.stem[len(sequence) + 1:]))
        if runs:
            return runs
        tried.append(folder / f"{sequence}_001.txt")
    raise ResultFileError(f"sequence {sequence}: no result file for tracker {tracker!r}; looked for "
                          + ", ".join(str(p) for p in tried), sequence=sequence, path=tried[0])


def load_sequence_results(results_dir: str | Path, tracker: str, dataset: str, sequence: str,
                          truncate_to_int: bool = False) -> list[np.ndarray]:
    """All runs of one sequence as (N, 4) arrays. ``truncate_to_int`` applies the official pipeline's
    ``astype(int)`` (truncation toward zero, benchmarks.md §1.8) to float result files."""
    runs = [read_result_file(p, sequence) for p in find_result_files(results_dir, tracker, dataset, sequence)]
    return [np.trunc(r) for r in runs] if truncate_to_int else runs


def collect_results(results_dir: str | Path, trackers: list[str], dataset: str, sequence_names: list[str],
                    truncate_to_int: bool = False) -> tuple[dict[str, dict[str, list[np.ndarray]]],
                                                            dict[str, dict[str, str]]]:
    """Read every tracker's results for every sequence.

    Returns ``(found, problems)``: ``found[tracker][sequence]`` is the list of runs (arrays (N, 4)) and
    ``problems[tracker][sequence]`` the message of a missing or malformed file (the caller decides whether that is
    fatal). Order follows ``sequence_names``.
    """
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    problems: dict[str, dict[str, str]] = {}
    for tracker in trackers:
        found[tracker], problems[tracker] = {}, {}
        for name in sequence_names:
            try:
                found[tracker][name] = load_sequence_results(results_dir, tracker, dataset, name, truncate_to_int)
            except ResultFileError as err:
                problems[tracker][name] = str(err)
    return found, problems
