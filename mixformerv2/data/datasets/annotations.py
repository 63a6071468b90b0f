"""Strict parsers for the benchmarks' annotation files, and the official toolkits' rules for odd rows.

What cannot be parsed never becomes a silent number: a row with the wrong number of fields, a value that is not a
number, an infinite value, a NaN where the benchmark has none, or a file whose length disagrees with the frame count
raises :class:`AnnotationError`, which names the file and the 1-based line.

What the official toolkits read and score is kept: a row with a zero or negative width or height (real LaSOT test
files hold ``1,1,-1,-1`` in lion-5 line 553 and ``613,731,247,-11`` in tiger-6 line 118) is an invalid frame, never
visible, and scored as the toolkits score invalid frames. Such rows, and ground truth shorter than the frames, are
reported as :class:`AnnotationIssue` warnings that name the file and the lines; the reader logs them once per
sequence. ``0,0,0,0`` rows are the benchmarks' own "target absent" marker and are not reported (unless the
benchmark's flags say the target is present).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

#: Values of ``AnnotationError.kind``.
BAD_ROW = "bad_row"
LENGTH_MISMATCH = "length_mismatch"
#: Values of ``AnnotationIssue.kind``.
INVALID_BOX = "invalid_box"
UNANNOTATED_FRAMES = "unannotated_frames"

_LISTED_LINES = 5


class AnnotationError(ValueError):
    """An annotation file that cannot be trusted. ``kind`` is ``"bad_row"`` or ``"length_mismatch"``; ``line`` is
    the 1-based line of the file where the problem is, or None when it concerns the whole file."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, kind: str = BAD_ROW):
        self.path = Path(path)
        self.line = line
        self.kind = kind
        where = f"{path}: line {line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


def read_text(path: str | Path, what: str = "annotation file") -> str:
    """The whole file as text; a missing file raises ``FileNotFoundError`` naming it and what it is."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} is missing") from None


@dataclass(frozen=True)
class AnnotationIssue:
    """Something in a benchmark's annotation that is read the way the official toolkits read it, but that a user
    should know about. ``kind`` is ``"invalid_box"`` (rows with a zero or negative width or height: invalid frames)
    or ``"unannotated_frames"`` (ground truth shorter than the frames: the extra frames are left out); ``message``
    names the file and the 1-based lines."""

    kind: str
    message: str


def read_boxes(path: str | Path, delimiter: str | None = ",", *, allow_nan: bool = False) -> np.ndarray:
    """Read an ``x,y,w,h`` box file: one row per frame, returned as (N, 4) float64 exactly as stored.

    delimiter: ``","``, ``"\\t"``, None (any whitespace) or ``"auto"`` (comma when the first row has one, else
    whitespace; OTB mixes both). allow_nan: all-NaN rows are the benchmark's "target absent" rows (UAV123); a row that
    is only partly NaN is always an error. Rows with a zero or negative width or height are kept as stored (see
    :func:`invalid_box_issue`).
    """
    text = read_text(path, "ground-truth file")
    body = text.rstrip()
    if not body:
        raise AnnotationError(path, "ground-truth file is empty")
    if delimiter == "auto":
        first = body.split("\n", 1)[0]
        delimiter = "," if "," in first else None
    if body[0] in "\r\n" or "\n\n" in body.replace("\r", "") or "\n \n" in body:
        _locate_bad_row(path, body, delimiter)
    try:
        boxes = np.loadtxt(io.StringIO(body), delimiter=delimiter, comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        _locate_bad_row(path, body, delimiter)
    if boxes.shape[1] != 4:
        _locate_bad_row(path, body, delimiter)
    _validate_boxes(path, boxes, allow_nan=allow_nan)
    return boxes


def _locate_bad_row(path: str | Path, body: str, delimiter: str | None) -> NoReturn:
    """Find the first malformed line of a box file and raise naming it (the slow path behind ``np.loadtxt``)."""
    for number, line in enumerate(body.splitlines(), start=1):
        fields = line.split(delimiter)
        if not line.strip():
            raise AnnotationError(path, "empty line inside the file", line=number)
        if len(fields) != 4:
            raise AnnotationError(path, f"expected 4 fields x,y,w,h, found {len(fields)}: {line.strip()!r}",
                                  line=number)
        for field_text in fields:
            try:
                float(field_text)
            except ValueError:
                raise AnnotationError(path, f"value {field_text.strip()!r} is not a number", line=number) from None
    raise AnnotationError(path, "cannot be parsed as rows of x,y,w,h")


def _validate_boxes(path: str | Path, boxes: np.ndarray, *, allow_nan: bool) -> None:
    nan = np.isnan(boxes)
    if np.isinf(boxes).any():
        raise AnnotationError(path, "infinite value", line=_first_row(np.isinf(boxes).any(axis=1)))
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        raise AnnotationError(path, "row is partly NaN", line=_first_row(partial))
    if not allow_nan and nan.any():
        raise AnnotationError(path, "NaN row (this benchmark has no NaN rows)", line=_first_row(nan.any(axis=1)))


def positive_size(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) bool: width and height both > 0 (False for NaN rows). The official toolkits' validity rule for w, h."""
    with np.errstate(invalid="ignore"):
        return (boxes_xywh[:, 2] > 0) & (boxes_xywh[:, 3] > 0)


def absent_marker_rows(boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) bool: the benchmarks' own "target absent" rows, ``0,0,0,0`` (LaSOT, TNL2K, GOT-10k) or all NaN
    (UAV123)."""
    return (boxes_xywh == 0).all(axis=1) | np.isnan(boxes_xywh).all(axis=1)


def invalid_box_issue(path: str | Path, boxes_xywh: np.ndarray, flagged_absent: np.ndarray | None = None,
                      first_line: int = 1) -> AnnotationIssue | None:
    """The ``invalid_box`` issue of a ground-truth file, or None when it has no such row.

    Reported rows have a zero or negative width or height and are not an absent marker (:func:`absent_marker_rows`)
    on a frame the benchmark calls absent: with ``flagged_absent`` ((N,) bool, the benchmark's own absence flags),
    a ``0,0,0,0`` row on a frame flagged present is reported too; without flags every ``0,0,0,0`` row is the marker.
    first_line: the file line of ``boxes_xywh[0]`` (rows dropped before it, as OTB's ``init_omit``, shift it).
    """
    marker = absent_marker_rows(boxes_xywh)
    if flagged_absent is not None:
        marker &= np.asarray(flagged_absent, dtype=bool)
    bad = ~positive_size(boxes_xywh) & ~marker
    if not bad.any():
        return None
    rows = np.flatnonzero(bad)
    lines = ", ".join(str(int(r) + first_line) for r in rows[:_LISTED_LINES])
    more = f" and {len(rows) - _LISTED_LINES} more" if len(rows) > _LISTED_LINES else ""
    first = ",".join(f"{v:g}" for v in boxes_xywh[rows[0]])
    plural = "s" if len(rows) > 1 else ""
    return AnnotationIssue(INVALID_BOX, f"{path}: line{plural} {lines}{more}: width or height not positive "
                                        f"(first: {first}); invalid frame{plural}: target not visible, scored as "
                                        "the official toolkits score invalid frames")


def unannotated_frames_issue(path: str | Path, num_rows: int, num_frames: int, frames_what: str) -> AnnotationIssue:
    """The ``unannotated_frames`` issue of a ground-truth file with fewer rows than there are frames: the toolkits
    score only annotated frames (results beyond the ground truth are cut), so the frames after the last row are left
    out of the sequence."""
    return AnnotationIssue(UNANNOTATED_FRAMES, f"{path}: has {num_rows} rows but {frames_what} has {num_frames}; "
                                               f"the {num_frames - num_rows} frames after the last row are left out, "
                                               "as the official toolkits score only annotated frames")


def _first_row(mask: np.ndarray) -> int:
    """1-based line number of the first True entry."""
    return int(np.flatnonzero(mask)[0]) + 1


def read_flag_line(path: str | Path) -> np.ndarray:
    """Read a single line of comma-separated 0/1 flags (LaSOT ``full_occlusion.txt``, ``out_of_view.txt``):
    (N,) bool."""
    text = read_text(path, "flag file")
    values = _fast_ints(text, ",")
    if values is None:
        values = _parse_ints(path, text.replace("\n", ",").split(","))
    if ((values != 0) & (values != 1)).any():
        raise AnnotationError(path, f"flag value {values[(values != 0) & (values != 1)][0]} is not 0 or 1")
    return values.astype(bool)


def read_int_column(path: str | Path) -> np.ndarray:
    """Read one integer per line (GOT-10k ``absence.label``, ``cover.label``, ``cut_by_image.label``): (N,) int64."""
    text = read_text(path, "label file")
    values = None if "\n\n" in text.strip().replace("\r", "") else _fast_ints(text, None)
    if values is None:
        values = _parse_ints(path, text.splitlines(), per_line=True)
    return values


def _fast_ints(text: str, delimiter: str | None) -> np.ndarray | None:
    """Integers of a one-line (comma) or one-per-line file through numpy's parser; None when that fails, so that the
    slow path can name the bad value."""
    body = text.strip()
    if not body:
        return np.zeros(0, dtype=np.int64)
    if "\n" in body and delimiter == ",":
        return None
    try:
        values = np.loadtxt(io.StringIO(body), delimiter=delimiter, comments=None, dtype=np.int64, ndmin=1)
    except ValueError:
        return None
    return values if values.ndim == 1 else None


def _parse_ints(path: str | Path, fields: list[str], per_line: bool = False) -> np.ndarray:
    """Slow, precise integer parsing: raises naming the first value that is not an integer."""
    while fields and not fields[-1].strip():
        fields.pop()
    values = np.empty(len(fields), dtype=np.int64)
    for i, field_text in enumerate(fields):
        try:
            number = float(field_text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number != int(number):
            raise AnnotationError(path, f"value {field_text.strip()!r} is not an integer",
                                  line=i + 1 if per_line else None)
        values[i] = int(number)
    return values


def check_length(path: str | Path, found: int, expected: int, what: str) -> None:
    """Raise a ``length_mismatch`` AnnotationError when a file has ``found`` rows but ``expected`` are needed."""
    if found != expected:
        raise AnnotationError(path, f"has {found} rows but {what} has {expected}", kind=LENGTH_MISMATCH)


def first_line(path: str | Path) -> str | None:
    """The stripped first line of a text file, or None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    lines = read_text(path, "text file").splitlines()
    return lines[0].strip() if lines else ""


def first_frame_ground_truth(gt_path: Path, gt_xywh: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a test split that withholds all but frame 0 (GOT-10k, TrackingNet): (num_frames, 4) with row 0
    then NaN rows, and (num_frames,) visible only at frame 0. A file with one row per frame is kept as is."""
    if num_frames == 0:
        raise AnnotationError(gt_path, f"no frames in {gt_path.parent}", kind=LENGTH_MISMATCH)
    if len(gt_xywh) == num_frames:
        return gt_xywh, positive_size(gt_xywh)
    if len(gt_xywh) != 1:
        raise AnnotationError(gt_path, f"test ground truth has {len(gt_xywh)} rows; expected 1 (first frame) or "
                                       f"{num_frames} (frames in {gt_path.parent})", kind=LENGTH_MISMATCH)
    full = np.full((num_frames, 4), np.nan)
    full[0] = gt_xywh[0]
    visible = np.zeros(num_frames, dtype=bool)
    visible[0] = positive_size(gt_xywh[:1])[0]
    return full, visible
