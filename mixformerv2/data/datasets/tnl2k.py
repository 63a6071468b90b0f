"""TNL2K: 700 test and 1300 train videos with a language description.

Layout: ``<root>/<video>/`` with ``imgs/`` (the frames), ``groundtruth.txt`` (comma-separated x,y,w,h, 0-based
integers) and ``language.txt``. Point the root at one split (the test root holds the 700 test folders).

Sequence list: ``<root>/TNL2K_testing_set.txt`` / ``<root>/TNL2K_train_set.txt`` (the toolkit's file names, one
name per line) override the packaged official lists (``tnl2k_test_split.txt``, ``tnl2k_train_split.txt``).

Quirks kept: the frames are every image file of ``imgs/`` sorted by file name, whatever its extension (one test video
has a replacement ``00000492.png`` among ``.jpg`` frames); the language is the first line, stripped and lower-cased
(as OSTrack reads it); boxes may have x <= 0 or y <= 0; ``0,0,0,0`` rows mark absent targets (no absence file is
read), so ``visible`` = w > 0 and h > 0. Other rows with a zero or negative width or height are invalid frames, as
in the toolkits, reported as an ``invalid_box`` annotation issue.

Frames and ground truth: the sequence has one frame per ground-truth row. Extra image files are left out with an
``unannotated_frames`` issue (the toolkits cut results to the ground truth); a copy without ``imgs/`` (the toolkit's
annotation-only download) reads and scores, and its frame paths raise naming the missing folder, as do those of a
folder with fewer image files than rows.
"""
from __future__ import annotations

from pathlib import Path

from mixformerv2.data.datasets.annotations import (AnnotationIssue, first_line, invalid_box_issue, positive_size,
                                                   read_boxes, unannotated_frames_issue)
from mixformerv2.data.datasets.base import (DatasetReader, FrameList, list_image_files, missing_folder_reason,
                                            names_from_override_or_package)
from mixformerv2.data.sequence import Sequence

_SPLITS = {"test": ("TNL2K_testing_set.txt", "tnl2k_test_split.txt"),
           "train": ("TNL2K_train_set.txt", "tnl2k_train_split.txt")}


class TNL2k(DatasetReader):
    """TNL2K ``split="test"`` (reader name ``tnl2k``) or ``"train"`` (``tnl2k_train``)."""

    def __init__(self, root: str | Path, split: str = "test"):
        if split not in _SPLITS:
            raise ValueError(f"TNL2K: unknown split {split!r}; known: {sorted(_SPLITS)}")
        self.name = "tnl2k" if split == "test" else "tnl2k_train"
        self.split = split
        override_file, packaged_file = _SPLITS[split]
        super().__init__(root, names_from_override_or_package(Path(root), override_file, packaged_file))

    def _load(self, sequence_name: str) -> Sequence:
        folder = self.root / sequence_name
        gt_path = folder / "groundtruth.txt"
        gt_xywh = read_boxes(gt_path, ",")
        frames, length_issue = _frames(folder / "imgs", gt_path, len(gt_xywh))
        issues = tuple(i for i in (invalid_box_issue(gt_path, gt_xywh), length_issue) if i is not None)
        language = first_line(folder / "language.txt")
        return Sequence(name=sequence_name, dataset=self.name, frame_paths=frames, gt_xywh=gt_xywh,
                        visible=positive_size(gt_xywh), language=language.lower() if language is not None else None,
                        meta={"split": self.split}, annotation_issues=issues)


def _frames(image_dir: Path, gt_path: Path, num_rows: int) -> tuple[FrameList, AnnotationIssue | None]:
    """The ``num_rows`` frames of ``image_dir`` in file-name order, and the issue of extra image files."""
    if not image_dir.is_dir():
        return FrameList.unavailable(image_dir, num_rows, missing_folder_reason(image_dir)), None
    names = sorted(list_image_files(image_dir))
    if len(names) < num_rows:
        reason = f"{image_dir}: has {len(names)} image files but {gt_path} has {num_rows} rows: frames are missing"
        return FrameList.unavailable(image_dir, num_rows, reason), None
    if len(names) > num_rows:
        issue = unannotated_frames_issue(gt_path, num_rows, len(names), f"{image_dir} (image files)")
        return FrameList.listed(image_dir, names[:num_rows]), issue
    return FrameList.listed(image_dir, names), None
