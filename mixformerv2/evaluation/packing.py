"""Submission packing for the GOT-10k and TrackingNet servers, and a local validator mirroring their rules.

Layouts (benchmarks.md §1.4, §1.5; official_spec §4.6):

* GOT-10k test (180 sequences): ``<seq>/<seq>_001.txt`` (comma-separated x,y,w,h per frame, frame 0 included)
  and ``<seq>/<seq>_time.txt`` (seconds per frame), sequence folders at the top level of the zip;
* TrackingNet test (511 sequences): ``<seq>.txt`` at the top level (comma-separated x,y,w,h per frame).

Both servers fail silently on format details (space/tab delimiters, an extra parent folder, missing files), so
``check_submission`` reports every such problem before upload.

Boxes are packed under the folder's box rule (``results.box_rule_for_folder``): our results (a ``run.json``) are
truncated toward zero to integers, as the official ``transform_got10k.py`` / ``transform_trackingnet.py`` pack the
runner's ``astype(int)`` files; raw results of other trackers are packed as stored.
"""
from __future__ import annotations

import logging
import math
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..utils.io import atomic_open
from .results import TRUNCATE_INT, BoxPolicy, box_rule_for_folder

logger = logging.getLogger(__name__)

KINDS = ("got10k", "trackingnet")
EXPECTED_COUNTS = {"got10k": 180, "trackingnet": 511}
_MAX_PROBLEMS_PER_FILE = 3


class PackError(ValueError):
    """The results cannot be packed into a valid submission; the message lists every problem."""


@dataclass(frozen=True)
class Expectation:
    """What a submission must contain: sequence ``names`` (None: unknown, only ``count`` is checked) and,
    where known, the number of frames of each sequence."""

    count: int | None
    names: tuple[str, ...] | None = None
    frame_counts: dict[str, int] | None = None


def got10k_test_names() -> list[str]:
    """GOT-10k_Test_000001 ... GOT-10k_Test_000180."""
    return [f"GOT-10k_Test_{i:06d}" for i in range(1, EXPECTED_COUNTS["got10k"] + 1)]


def _packaged_names(filename: str) -> list[str] | None:
    try:
        text = resources.files("mixformerv2.data").joinpath("specs", filename).read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_expectation(kind: str, expected_count: int | None = None,
                        frame_counts: dict[str, int] | None = None) -> Expectation:
    """The server's test-set expectation: names from the packaged split lists where available.

    ``expected_count`` replaces the official count and drops the name list (a subset run, a synthetic test).
    ``frame_counts`` (sequence -> frames, e.g. from the dataset registry) also fixes the names.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown submission kind {kind!r} (known: {', '.join(KINDS)})")
    if frame_counts:
        return Expectation(len(frame_counts), tuple(sorted(frame_counts)), dict(frame_counts))
    if expected_count is not None:
        return Expectation(expected_count)
    names = got10k_test_names() if kind == "got10k" else _packaged_names("trackingnet_test_split.txt")
    if names is None:
        return Expectation(EXPECTED_COUNTS[kind])
    return Expectation(len(names), tuple(names))


# ------------------------------------------------------------------------------------------------ file checks
def check_box_text(text: str, where: str, frames: int | None = None) -> list[str]:
    """Problems of a box file: 4 comma-separated finite numbers per line, no negative size, frame count."""
    problems: list[str] = []
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return [f"{where}: empty file"]
    bad = 0
    for i, line in enumerate(lines, start=1):
        reason = _box_line_problem(line)
        if reason is not None:
            bad += 1
            if bad <= _MAX_PROBLEMS_PER_FILE:
                problems.append(f"{where}: line {i}: {reason}")
    if bad > _MAX_PROBLEMS_PER_FILE:
        problems.append(f"{where}: {bad - _MAX_PROBLEMS_PER_FILE} more bad lines")
    if frames is not None and len(lines) != frames:
        problems.append(f"{where}: {len(lines)} lines but the sequence has {frames} frames")
    return problems


def _box_line_problem(line: str) -> str | None:
    fields = line.strip().split(",")
    if len(fields) != 4:
        return f"expected 4 comma-separated values, got {line.strip()!r}"
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return f"non-numeric value in {line.strip()!r}"
    if not all(math.isfinite(v) for v in values):
        return f"NaN or infinite value in {line.strip()!r}"
    if values[2] < 0 or values[3] < 0:
        return f"negative width or height in {line.strip()!r}"
    return None


def check_time_text(text: str, where: str, frames: int | None) -> list[str]:
    """Problems of a GOT-10k time file: one finite non-negative number per line, one line per frame."""
    lines = [line for line in text.splitlines() if line.strip()]
    problems = []
    for i, line in enumerate(lines, start=1):
        try:
            value = float(line.strip())
        except ValueError:
            problems.append(f"{where}: line {i}: non-numeric time {line.strip()!r}")
            break
        if not math.isfinite(value) or value < 0:
            problems.append(f"{where}: line {i}: invalid time {line.strip()!r}")
            break
    if frames is not None and len(lines) != frames:
        problems.append(f"{where}: {len(lines)} lines but the box file has {frames}")
    return problems


# ---------------------------------------------------------------------------------------------------- packing
def _normalise_rows(text: str) -> str:
    """Result rows in any of our delimiters (comma, tab, spaces) -> comma-separated, newline-terminated."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append(",".join(line.replace(",", " ").split()))
    return "".join(row + "\n" for row in rows)


def _truncate_rows(text: str) -> str:
    """Comma-separated rows -> the same rows with every number truncated toward zero (``astype(int)``: 12.996 -> 12,
    -1.2 -> -1). A field that is not a finite number is left as it is, for the validator to report."""
    rows = []
    for line in text.splitlines():
        fields = []
        for value in line.split(","):
            try:
                fields.append(str(math.trunc(float(value))))
            except (ValueError, OverflowError):  # text, NaN or infinity: reported by check_box_text
                fields.append(value)
        rows.append(",".join(fields))
    return "".join(row + "\n" for row in rows)


def _result_names(results_dir: Path) -> list[str]:
    return sorted(p.stem for p in results_dir.glob("*.txt") if not p.stem.endswith("_time"))


def collect_submission(kind: str, results_dir: str | Path, expectation: Expectation,
                       policy: BoxPolicy = BoxPolicy()) -> tuple[dict[str, str], list[str]]:
    """Build the zip members (path -> text) from a results folder (``<seq>.txt``, ``<seq>_time.txt``) and list
    the problems found against ``expectation``. Boxes follow the folder's box rule under ``policy``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: results folder not found")
    applied = box_rule_for_folder(results_dir, policy)
    logger.info("%s: packing boxes %s (%s)", results_dir,
                "truncated toward zero" if applied.rule == TRUNCATE_INT else "as stored", applied.reason)
    names = list(expectation.names) if expectation.names is not None else _result_names(results_dir)
    members: dict[str, str] = {}
    missing_boxes, missing_times = [], []
    for name in names:
        box_path = results_dir / f"{name}.txt"
        if not box_path.is_file():
            missing_boxes.append(name)
            continue
        boxes = _normalise_rows(box_path.read_text())
        if applied.rule == TRUNCATE_INT:
            boxes = _truncate_rows(boxes)
        if kind == "trackingnet":
            members[f"{name}.txt"] = boxes
            continue
        members[f"{name}/{name}_001.txt"] = boxes
        time_path = results_dir / f"{name}_time.txt"
        if time_path.is_file():
            members[f"{name}/{name}_time.txt"] = _normalise_rows(time_path.read_text())
        else:
            missing_times.append(name)
    problems = []
    if missing_boxes:
        problems.append(f"{results_dir}: {len(missing_boxes)} result file(s) <sequence>.txt missing: "
                        + _listing(missing_boxes))
    if missing_times:
        problems.append(f"{results_dir}: {len(missing_times)} time file(s) <sequence>_time.txt missing: "
                        + _listing(missing_times))
    if expectation.names is None and expectation.count is not None and len(names) != expectation.count:
        problems.append(f"{results_dir}: {len(names)} sequences, the {kind} test set has {expectation.count}")
    return members, problems


def _listing(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def write_zip(members: dict[str, str], out_zip: str | Path) -> None:
    """Write a zip atomically; GOT-10k sequence folders get their own directory entries."""
    with atomic_open(out_zip) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        folders = sorted({m.split("/")[0] + "/" for m in members if "/" in m})
        for folder in folders:
            zf.writestr(folder, "")
        for path in sorted(members):
            zf.writestr(path, members[path])


def pack(kind: str, results_dir: str | Path, out_zip: str | Path, expectation: Expectation | None = None,
         force: bool = False, policy: BoxPolicy = BoxPolicy()) -> list[str]:
    """Pack a results folder into a server submission and validate the zip.

    policy: which box rule applies (default: our results truncated toward zero as the official packing scripts
    write them, raw results as stored; ``BoxPolicy(full_precision=True)`` packs our boxes at full precision).
    Raises ``PackError`` (nothing written) when the results are incomplete or malformed, unless ``force``.
    Returns the problems of the written zip (empty when valid).
    """
    expectation = expectation or default_expectation(kind)
    members, problems = collect_submission(kind, results_dir, expectation, policy)
    if not problems:  # missing files would be reported twice
        problems = _check_members(kind, members, expectation)
    if problems and not force:
        raise PackError(f"{results_dir}: cannot pack a valid {kind} submission:\n  " + "\n  ".join(problems))
    write_zip(members, out_zip)
    logger.info("%s: %d sequences packed for %s", out_zip, len(_sequences_in(kind, members)), kind)
    return check_submission(out_zip, kind, expectation)


# --------------------------------------------------------------------------------------------------- checking
def detect_kind(paths: list[str]) -> tuple[str | None, str]:
    """Which server a submission's file list is for, read from its contents: ``(kind, what showed it)``, or
    ``(None, why it cannot be told)``. GOT-10k: ``<seq>_001.txt`` files (one folder per sequence); TrackingNet:
    only ``.txt`` files, no ``_001.txt``, all at one level (the top, or one extra folder, which the layout check
    then reports)."""
    files = [p for p in paths if not p.endswith("/")]
    if not files:
        return None, "the zip holds no files"
    runs = [p for p in files if p.endswith("_001.txt")]
    if runs:
        return "got10k", f"{len(runs)} per-sequence <seq>_001.txt file(s), e.g. {runs[0]}"
    depths = {p.count("/") for p in files}
    if all(p.endswith(".txt") for p in files) and len(depths) == 1 and depths <= {0, 1}:
        return "trackingnet", f"{len(files)} <seq>.txt file(s) at one level, no <seq>_001.txt, e.g. {files[0]}"
    return None, (f"neither layout: no <seq>_001.txt (GOT-10k) and not only .txt files at one level (TrackingNet), "
                  f"e.g. {files[0]}")


def zip_kind(zip_path: str | Path) -> tuple[str | None, str]:
    """``detect_kind`` of a zip's members; ``(None, reason)`` also when the zip cannot be read."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return detect_kind(zf.namelist())
    except (OSError, zipfile.BadZipFile) as err:
        return None, f"not a readable zip file ({err})"


def check_submission(zip_path: str | Path, kind: str | None = None,
                     expectation: Expectation | None = None) -> list[str]:
    """Every problem the server would trip over (empty list: the submission is valid)."""
    zip_path = Path(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = {info.filename: zf.read(info).decode("utf-8", errors="replace")
                       for info in zf.infolist() if not info.is_dir()}
    except (OSError, zipfile.BadZipFile) as err:
        return [f"{zip_path}: not a readable zip file ({err})"]
    if kind is None:
        kind, reason = detect_kind(list(members))
        if kind is None:
            return [f"{zip_path}: cannot tell which server this submission is for: {reason}"]
    expectation = expectation or default_expectation(kind)
    return [f"{zip_path}: {p}" for p in _check_members(kind, members, expectation)]


def _check_members(kind: str, members: dict[str, str], expectation: Expectation) -> list[str]:
    problems = _check_layout(kind, members)
    if problems:
        return problems
    found = _sequences_in(kind, members)
    if expectation.names is not None:
        missing = sorted(set(expectation.names) - set(found))
        extra = sorted(set(found) - set(expectation.names))
        if missing:
            problems.append(f"{len(missing)} sequence(s) missing: {_listing(missing)}")
        if extra:
            problems.append(f"{len(extra)} unexpected sequence(s): {_listing(extra)}")
    elif expectation.count is not None and len(found) != expectation.count:
        problems.append(f"{len(found)} sequences, expected {expectation.count}")
    frame_counts = expectation.frame_counts or {}
    for name in sorted(found):
        if kind == "trackingnet":
            problems += check_box_text(members[f"{name}.txt"], f"{name}.txt", frame_counts.get(name))
            continue
        box_member, time_member = f"{name}/{name}_001.txt", f"{name}/{name}_time.txt"
        problems += check_box_text(members[box_member], box_member, frame_counts.get(name))
        if time_member not in members:
            problems.append(f"{time_member}: time file missing")
        else:
            frames = len([ln for ln in members[box_member].splitlines() if ln.strip()])
            problems += check_time_text(members[time_member], time_member, frames)
    return problems


def _check_layout(kind: str, members: dict[str, str]) -> list[str]:
    """Wrong nesting (an extra parent folder) and unexpected files."""
    if not members:
        return ["the zip is empty"]
    problems = []
    tops = {p.split("/")[0] for p in members}
    depth = 2 if kind == "got10k" else 1
    if len(tops) == 1 and all(p.count("/") >= depth for p in members):
        problems.append(f"every file is inside the extra folder '{next(iter(tops))}/'; the server expects "
                        + ("the sequence folders" if kind == "got10k" else "the sequence files")
                        + " at the top level of the zip")
        return problems
    for path in sorted(members):
        parts = path.split("/")
        if kind == "trackingnet":
            ok = len(parts) == 1 and path.endswith(".txt")
        else:
            ok = len(parts) == 2 and parts[1] in (f"{parts[0]}_001.txt", f"{parts[0]}_time.txt")
        if not ok:
            problems.append(f"unexpected entry {path!r}")
    return problems


def _sequences_in(kind: str, members: dict[str, str]) -> list[str]:
    if kind == "trackingnet":
        return sorted(p[:-len(".txt")] for p in members)
    return sorted(p.split("/")[0] for p in members if p.endswith("_001.txt"))
