"""Reading tracker result files.

A result file holds one ``x, y, w, h`` row per frame, separated by commas, tabs or spaces (pytracking writes tabs,
the toolkits commas, MATLAB trackers spaces). Layouts accepted under a results directory ``DIR``:

* ``DIR/<tracker>/<sequence>.txt`` (pytracking, toolkits);
* ``DIR/<tracker>/<dataset>/<sequence>.txt`` (this package's test runner);
* ``DIR/<tracker>[/<dataset>]/<sequence>/<sequence>_001.txt``, ``_002.txt``, ... (got10k toolkit runs).

A missing or malformed file raises :class:`ResultFileError` naming the sequence and the file; NaN, infinite values
and negative sizes raise naming the file and the 1-based row.

Box rules (which numbers are scored, benchmarks.md §1.8). The official runner saves boxes with ``astype(int)``
(truncation toward zero) and the published numbers were computed from those files. Our runner stores boxes at full
precision and writes ``run.json`` beside them with ``"box_rule": "truncate_int"``; such results are scored (and
packed) truncated toward zero, exactly as the official pipeline would, unless ``full_precision`` is asked for. Result
files without our ``run.json`` (raw results of other trackers, published runs) are scored as stored, unless
``truncate_raw`` is asked for. Truncation is applied to the parsed float64 values, never to rounded text, so a
coordinate never moves by a pixel.
"""
from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import EvaluationError

logger = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[,\t ]+")

#: The manifest our runner (``tracking/runner.py``) writes beside its result files.
MANIFEST = "run.json"
#: ``run.json`` entries that must agree before results are combined (the rest is provenance only): a re-run that
#: resumes a folder, and the shards of one benchmark run on several machines.
MATCH_KEYS = ("checkpoint_sha256", "model", "settings", "tracker")
#: What each shard of a sharded run (``tools/test.py --shard K/N``) writes beside ``run.json``.
SHARD_MANIFEST_GLOB = "run.shard-*.json"
#: Score the boxes truncated toward zero, as the official runner's ``astype(int)`` saves them.
TRUNCATE_INT = "truncate_int"
#: Score the boxes exactly as the file stores them.
AS_STORED = "as_stored"
BOX_RULES = (TRUNCATE_INT, AS_STORED)


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


@dataclass(frozen=True)
class BoxPolicy:
    """Which box rule applies to which results (see the module docstring).

    full_precision: score our results (a folder with our ``run.json``) as stored instead of by their box rule.
    truncate_raw: truncate raw results of other trackers (no ``run.json``) toward zero instead of scoring them as
        stored (their files came from another pipeline; use it when that pipeline truncated too).
    """

    full_precision: bool = False
    truncate_raw: bool = False


@dataclass(frozen=True)
class AppliedRule:
    """The rule applied to one results folder: ``rule`` (one of ``BOX_RULES``) and ``reason``, a phrase saying
    why (which ``run.json``, which flag)."""

    rule: str
    reason: str

    def as_dict(self) -> dict:
        return {"box_rule": self.rule, "reason": self.reason}


def read_manifest(folder: str | Path) -> dict | None:
    """Our ``run.json`` in ``folder``, or None when there is none. Raises :class:`ResultFileError` naming the file
    when it is not a JSON object."""
    path = Path(folder) / MANIFEST
    return _read_json_object(path) if path.is_file() else None


def shard_manifest_name(index: int, count: int) -> str:
    """The manifest file of shard ``index`` (1-based) of ``count``: ``run.shard-2-of-4.json``."""
    return f"run.shard-{index}-of-{count}.json"


def manifest_differences(old: dict, new: dict, keys: tuple[str, ...] = MATCH_KEYS, prefix: str = "") -> list[str]:
    """``key: old (existing) vs new (this run)`` for every dotted key under ``keys`` where two manifests differ."""
    out = []
    for key in sorted(set(keys)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += manifest_differences(a, b, tuple(set(a) | set(b)), f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} (existing) vs {b!r} (this run)")
    return out


def _read_json_object(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultFileError(f"{path}: not valid JSON ({err})", path=path) from None
    if not isinstance(manifest, dict):
        raise ResultFileError(f"{path}: expected a JSON object, got {type(manifest).__name__}", path=path)
    return manifest


def shard_manifests(folder: str | Path) -> dict[Path, dict]:
    """The shard manifests of a results folder (path -> content), sorted by path."""
    return {path: _read_json_object(path) for path in sorted(Path(folder).glob(SHARD_MANIFEST_GLOB))}


def check_shards(folder: str | Path) -> None:
    """Raise :class:`ResultFileError` when a shard of ``folder`` ran with another checkpoint, model, setting or
    tracker than its ``run.json`` (shards merged from machines that did not run the same thing)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return
    for path, shard in shard_manifests(folder).items():
        diffs = manifest_differences(manifest, shard)
        if diffs:
            raise ResultFileError(f"{path}: this shard ran with other settings than {folder / MANIFEST}, refusing "
                                  f"to score them together: " + "; ".join(d.replace("(existing)", "(run.json)")
                                                                          .replace("(this run)", "(shard)")
                                                                          for d in diffs), path=path)


def unfinished_shards(folder: str | Path) -> list[str]:
    """``K/N`` of every shard of ``folder`` whose sequences do not all have a box file yet."""
    folder = Path(folder)
    out = []
    for path, shard in shard_manifests(folder).items():
        info = shard.get("shard", {})
        names = info.get("sequences", [])
        if any(not (folder / f"{name}.txt").is_file() for name in names):
            out.append(f"{info.get('index', '?')}/{info.get('count', '?')}")
    return out


def box_rule_for_folder(folder: str | Path, policy: BoxPolicy = BoxPolicy()) -> AppliedRule:
    """The box rule for the result files in ``folder`` under ``policy``.

    Ours (a ``run.json``): its ``box_rule`` (``truncate_int``; an older ``run.json`` without the key is treated as
    ``truncate_int`` with a warning), or ``as_stored`` with ``policy.full_precision``. Raw results: ``as_stored``, or
    ``truncate_int`` with ``policy.truncate_raw``. An unknown ``box_rule``, or a shard that ran with other settings
    than ``run.json`` (:func:`check_shards`), raises naming the file.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    check_shards(folder)
    if manifest is None:
        if policy.truncate_raw:
            return AppliedRule(TRUNCATE_INT, "raw results, truncated as asked (truncate_raw)")
        return AppliedRule(AS_STORED, f"raw results (no {MANIFEST}), scored as stored")
    path = folder / MANIFEST
    if policy.full_precision:
        return AppliedRule(AS_STORED, f"{path}: full precision as asked (full_precision)")
    rule = manifest.get("box_rule")
    if rule is None:
        logger.warning("%s: written by an older version without 'box_rule' (its boxes may be rounded to 2 "
                       "decimals, which can move a truncated coordinate by a pixel); scoring truncated toward zero",
                       path)
        return AppliedRule(TRUNCATE_INT, f"{path}: no box_rule (older run), official truncation")
    if rule not in BOX_RULES:
        raise ResultFileError(f"{path}: box_rule: unknown rule {rule!r} (known: {', '.join(BOX_RULES)})", path=path)
    return AppliedRule(rule, f"{path}: box_rule {rule}")


def tracker_folder(results_dir: str | Path, tracker: str, dataset: str) -> Path:
    """The folder whose ``run.json`` governs a tracker's results: ``DIR/<tracker>/<dataset>`` when it has one (our
    runner's layout), else ``DIR/<tracker>``."""
    base = Path(results_dir) / tracker
    nested = base / dataset
    return nested if (nested / MANIFEST).is_file() else base


def box_rules(results_dir: str | Path, trackers: list[str], dataset: str,
              policy: BoxPolicy = BoxPolicy()) -> dict[str, AppliedRule]:
    """The box rule of every tracker (see :func:`box_rule_for_folder`), logged once per tracker."""
    rules = {}
    for tracker in trackers:
        rules[tracker] = box_rule_for_folder(tracker_folder(results_dir, tracker, dataset), policy)
        logger.info("%s: boxes scored %s (%s)", tracker,
                    "truncated toward zero" if rules[tracker].rule == TRUNCATE_INT else "as stored",
                    rules[tracker].reason)
    return rules


def apply_box_rule(boxes_xywh: np.ndarray, rule: str) -> np.ndarray:
    """(N, 4) boxes under ``rule``: ``truncate_int`` -> ``np.trunc`` (the official ``astype(int)``: 12.996 -> 12,
    -1.2 -> -1), ``as_stored`` -> unchanged. Returns float64."""
    if rule == TRUNCATE_INT:
        return np.trunc(boxes_xywh)
    if rule == AS_STORED:
        return boxes_xywh
    raise ValueError(f"unknown box rule {rule!r} (known: {', '.join(BOX_RULES)})")


def load_sequence_results(results_dir: str | Path, tracker: str, dataset: str, sequence: str,
                          rule: str = AS_STORED) -> list[np.ndarray]:
    """All runs of one sequence as (N, 4) arrays, under box ``rule`` (see :func:`apply_box_rule`)."""
    runs = [read_result_file(p, sequence) for p in find_result_files(results_dir, tracker, dataset, sequence)]
    return [apply_box_rule(r, rule) for r in runs]


def collect_results(results_dir: str | Path, trackers: list[str], dataset: str, sequence_names: list[str],
                    rules: dict[str, AppliedRule] | None = None) -> tuple[dict[str, dict[str, list[np.ndarray]]],
                                                                          dict[str, dict[str, str]]]:
    """Read every tracker's results for every sequence.

    rules: the box rule per tracker (:func:`box_rules`); default: ``box_rules`` with the default policy (ours
    truncated like the official pipeline, raw results as stored).
    Returns ``(found, problems)``: ``found[tracker][sequence]`` is the list of runs (arrays (N, 4)) and
    ``problems[tracker][sequence]`` the message of a missing or malformed file (the caller decides whether that is
    fatal). Order follows ``sequence_names``.
    """
    if rules is None:
        rules = box_rules(results_dir, trackers, dataset)
    found: dict[str, dict[str, list[np.ndarray]]] = {}
    problems: dict[str, dict[str, str]] = {}
    for tracker in trackers:
        found[tracker], problems[tracker] = {}, {}
        for name in sequence_names:
            try:
                found[tracker][name] = load_sequence_results(results_dir, tracker, dataset, name,
                                                             rules[tracker].rule)
            except ResultFileError as err:
                problems[tracker][name] = str(err)
    return found, problems
