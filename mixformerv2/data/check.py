"""Dataset checker: verifies a benchmark copy on disk through its reader, so it checks exactly what training and
evaluation will read.

Problem kinds:
  * ``missing_sequence``: a listed sequence whose folder or annotation file does not exist;
  * ``bad_row``: a ground-truth or label row the reader rejects (wrong field count, not a number, NaN where the
    benchmark has none, negative size);
  * ``length_mismatch``: ground truth, flag files and frames that disagree in length (including image files in a
    sequence folder beyond the ground-truth rows);
  * ``missing_frame``: a frame file that does not exist (or a gap in numbered frame names);
  * ``unreadable_frame``: a frame that cannot be decoded or is cut short (only with ``check_images=True``, which
    decodes every frame with the reader that training and tracking use);
  * ``bad_box``: a zero or negative size on a frame the benchmark's own flags call present (LaSOT occlusion and
    out-of-view, GOT-10k absence and cover). Benchmarks without such flags mark absence with ``0,0,0,0`` or NaN rows,
    which are not problems.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mixformerv2.data.datasets.annotations import AnnotationError
from mixformerv2.data.datasets.base import DatasetReader, FrameList
from mixformerv2.data.sequence import FrameError, Sequence, read_frame_rgb

logger = logging.getLogger(__name__)

PROBLEM_KINDS = ("missing_sequence", "bad_row", "length_mismatch", "missing_frame", "unreadable_frame", "bad_box")


@dataclass(frozen=True)
class Problem:
    """One problem found: its kind (one of PROBLEM_KINDS), the sequence and a message naming the file or frame."""

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
        return not any(self.counts.values())

    def summary(self, max_examples: int = 5) -> str:
        """Human-readable summary: totals, the count of each problem kind and its first examples."""
        lines = [f"{self.dataset} at {self.root}: {self.num_sequences} sequences, {self.num_frames} frames checked"]
        if self.ok:
            lines.append("no problems found")
            return "\n".join(lines)
        for kind in PROBLEM_KINDS:
            if self.counts.get(kind):
                lines.append(f"{kind}: {self.counts[kind]}")
                lines.extend(f"  {p.sequence}: {p.message}" for p in self.examples[kind][:max_examples])
        return "\n".join(lines)


def check_dataset(reader: DatasetReader, check_images: bool = False, progress: bool = False) -> CheckReport:
    """Check every sequence of ``reader``: annotations (through the reader's own strict parsing), frame files
    (existence, or full decoding with ``check_images``), frame counts and box sizes. Returns the report."""
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
        _check_frames(report, sequence, listings, reader.whole_folder, check_images)
        _check_boxes(report, sequence)
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
                report.add("length_mismatch", sequence.name,
                           f"{folder}: {on_disk} '{suffix}' files but {len(frames)} ground-truth rows")


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


def _check_boxes(report: CheckReport, sequence: Sequence) -> None:
    absent = sequence.meta.get("absent")
    if absent is None:
        return
    boxes = sequence.gt_xywh
    with np.errstate(invalid="ignore"):
        bad = ~np.asarray(absent) & ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
    for index in np.flatnonzero(bad):
        report.add("bad_box", sequence.name, f"frame {index}: box {boxes[index].tolist()} has no area but the "
                                             "benchmark's flags say the target is present")
