"""Dataset checker: verifies a benchmark copy on disk through its reader, so it checks exactly what training and
evaluation will read.

Problem kinds (errors: the copy cannot be used as it is):
  * ``missing_sequence``: a listed sequence whose folder or annotation file does not exist;
  * ``bad_row``: a ground-truth or label row the reader cannot parse (wrong field count, not a number, NaN where the
    benchmark has none);
  * ``length_mismatch``: ground truth, flag files and frames that disagree in a way the toolkits do not accept
    (flag files of another length, ground truth longer than a table's frame range);
  * ``missing_frame``: a frame file or frame folder that does not exist (or a gap in numbered frame names);
  * ``unreadable_frame``: a frame that cannot be decoded or is cut short (only with ``check_images=True``, which
    decodes every frame with the reader that training and tracking use).

Warning kinds (read as the official toolkits read them; the copy is usable and the exit status stays 0):
  * ``invalid_box``: ground-truth rows with a zero or negative width or height (invalid frames, not visible), other
    than the benchmark's ``0,0,0,0`` absent rows, from the reader's annotation issues;
  * ``unannotated_frames``: frames beyond the last ground-truth row (left out of the sequence, as the toolkits do).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mixformerv2.data.datasets.annotations import INVALID_BOX, UNANNOTATED_FRAMES, AnnotationError
from mixformerv2.data.datasets.base import DatasetReader, FrameList
from mixformerv2.data.sequence import FrameError, Sequence, read_frame_rgb

logger = logging.getLogger(__name__)

PROBLEM_KINDS = ("missing_sequence", "bad_row", "length_mismatch", "missing_frame", "unreadable_frame")
WARNING_KINDS = (INVALID_BOX, UNANNOTATED_FRAMES)


@dataclass(frozen=True)
class Problem:
    """One problem found: its kind (one of PROBLEM_KINDS or WARNING_KINDS), the sequence and a message naming the
    file or frame."""

    kind: str
    sequence: str
    message: str


@dataclass
class CheckReport:
    """Counts per problem kind and the first ``max_examples`` problems of each kind."""

    dataset: str
    root: Path
    num_sequences: int = 0
    num_frames: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    max_examples: int = 20

    def add(self, kind: str, sequence: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(Problem(kind, sequence, message))
        logger.debug("%s: %s: %s", kind, sequence, message)

    @property
    def ok(self) -> bool:
        """No error was found (warnings allowed)."""
        return not any(self.counts.get(kind) for kind in PROBLEM_KINDS)

    def summary(self, max_examples: int = 5) -> str:
        """Human-readable summary: totals, the count of each problem kind (errors, then warnings) and its first
        examples."""
        lines = [f"{self.dataset} at {self.root}: {self.num_sequences} sequences, {self.num_frames} frames checked"]
        if not any(self.counts.values()):
            lines.append("no problems found")
            return "\n".join(lines)
        for kind in PROBLEM_KINDS + WARNING_KINDS:
            if self.counts.get(kind):
                label = " (warning)" if kind in WARNING_KINDS else ""
                lines.append(f"{kind}{label}: {self.counts[kind]}")
                lines.extend(f"  {p.sequence}: {p.message}" for p in self.examples[kind][:max_examples])
        if self.ok:
            lines.append("no errors found (warnings only)")
        return "\n".join(lines)


def check_dataset(reader: DatasetReader, check_images: bool = False, progress: bool = False,
                  check_frames: bool = True) -> CheckReport:
    """Check every sequence of ``reader``: annotations (through the reader's own strict parsing, with its annotation
    issues as warnings), frame files (existence, or full decoding with ``check_images``) and frame counts.
    ``check_frames=False`` checks the annotations only (a copy for scoring, as the toolkits ship it). Returns the
    report."""
    report = CheckReport(dataset=reader.name, root=reader.root)
    listings = _FolderListings()
    for name in tqdm(reader.sequence_names, desc=f"checking {reader.name}", disable=not progress, unit="seq"):
        report.num_sequences += 1
        try:
            sequence = reader[name]
        except FileNotFoundError as error:
            report.add("missing_sequence", name, str(error))
            continue
        except AnnotationError as error:
            report.add(error.kind, name, str(error))
            continue
        except ValueError as error:
            report.add("bad_row", name, str(error))
            continue
        report.num_frames += len(sequence)
        for issue in sequence.annotation_issues:
            report.add(issue.kind, name, issue.message)
        if check_frames:
            _check_frames(report, sequence, listings, reader.whole_folder, check_images)
    return report


class _FolderListings:
    """File names of recently listed folders (consecutive sequences often share one: COCO, UAV123 sub-ranges)."""

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._cache: dict[Path, set[str] | None] = {}

    def get(self, folder: Path) -> set[str] | None:
        """The names in ``folder``, or None when it does not exist."""
        if folder not in self._cache:
            if len(self._cache) >= self.capacity:
                del self._cache[next(iter(self._cache))]
            try:
                self._cache[folder] = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._cache[folder] = None
        return self._cache[folder]


def _frame_names_by_folder(frame_paths) -> dict[Path, list[tuple[int, str]]]:
    """(frame index, file name) pairs grouped by folder, without building a Path per frame where possible."""
    if isinstance(frame_paths, FrameList):
        return {frame_paths.folder: [(i, frame_paths.file_name(i)) for i in range(len(frame_paths))]}
    by_folder: dict[Path, list[tuple[int, str]]] = defaultdict(list)
    for index, path in enumerate(frame_paths):
        path = Path(path)
        by_folder[path.parent].append((index, path.name))
    return by_folder


def _check_frames(report: CheckReport, sequence: Sequence, listings: _FolderListings, whole_folder: bool,
                  check_images: bool) -> None:
    missing_reason = getattr(sequence.frame_paths, "missing_reason", None)
    if missing_reason is not None:
        report.add("missing_frame", sequence.name, f"{missing_reason} ({len(sequence)} frames)")
        return
    for folder, frames in _frame_names_by_folder(sequence.frame_paths).items():
        present = listings.get(folder)
        if present is None:
            report.add("missing_frame", sequence.name, f"{folder}: frame folder is missing ({len(frames)} frames)")
            continue
        for index, file_name in frames:
            if file_name not in present:
                report.add("missing_frame", sequence.name, f"{folder / file_name}: frame {index} is missing")
            elif check_images:
                try:
                    read_frame_rgb(folder / file_name)
                except OSError as error:  # decoded exactly as training and tracking will, truncation included
                    reason = error.reason if isinstance(error, FrameError) else str(error)
                    report.add("unreadable_frame", sequence.name, f"{folder / file_name}: frame {index} {reason}")
        _check_numbering(report, sequence.name, folder, [name for _, name in frames])
        if whole_folder and frames:
            suffix = os.path.splitext(frames[0][1])[1]
            on_disk = sum(1 for name in present if name.endswith(suffix))
            if on_disk > len(frames):
                report.add(UNANNOTATED_FRAMES, sequence.name,
                           f"{folder}: {on_disk} '{suffix}' files but {len(frames)} ground-truth rows; the frames "
                           "after the last row are not part of the sequence (as in the official toolkits)")


def _check_numbering(report: CheckReport, sequence_name: str, folder: Path, names: list[str]) -> None:
    """Gaps in integer frame names (listed frames such as TrackingNet test) are missing frames."""
    stems = [os.path.splitext(n)[0] for n in names]
    if not stems or not all(s.isdigit() for s in stems):
        return
    numbers = sorted(int(s) for s in stems)
    if numbers[-1] - numbers[0] + 1 == len(numbers):
        return
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    for number in missing:
        report.add("missing_frame", sequence_name, f"{folder}: no frame numbered {number} between "
                                                   f"{numbers[0]} and {numbers[-1]}")
