"""LaSOT (protocol II: 1120 train / 280 test videos) and the LaSOT extension subset (LaSOT_ext, 150 test videos).

Layout: ``<root>/<class>/<class>-<k>/`` with ``img/00000001.jpg ...`` (8 digits, 1-based, one frame per
ground-truth row), ``groundtruth.txt`` (comma-separated x,y,w,h), ``full_occlusion.txt`` and ``out_of_view.txt``
(one line of comma-separated 0/1 flags) and ``nlp.txt`` (one sentence). The class is the part of the name before the
last ``-`` (``rubicCube`` keeps its capital C).

Sequence list: ``<root>/testing_set.txt`` (test split) or ``<root>/training_set.txt`` (train split), one
``class-N`` name per line, overrides the packaged official list (``data/specs/lasot_test_split.txt``,
``lasot_train_split.txt``, ``lasot_extension_subset.txt``), so that synthetic or partial copies with other names
work with the same reader.

Boxes are returned as stored. LaSOT's files use MATLAB-style 1-based pixels (no present box has x or y below 1), and
no official toolkit converts them: metrics are computed in the frame the first box defines, so the tracker echoes it.
``visible`` = not full_occlusion and not out_of_view and w > 0 and h > 0. All-zero rows mark absent targets; rows
with a zero or negative width or height (``1,1,-1,-1`` in lion-5, ``613,731,247,-11`` in tiger-6) are invalid frames,
as in the toolkits, and are reported as an ``invalid_box`` annotation issue (as is an all-zero row on a frame the
flags call present). ``meta``: ``full_occlusion``, ``out_of_view`` and ``absent`` (their OR), each (N,) bool.

Frames are ``img/00000001.jpg`` up to the number of ground-truth rows (the toolkits' rule: image files beyond it are
not part of the sequence). A copy without ``img/`` (the toolkits' annotation-only download) reads and scores; its
frame paths raise naming the missing folder.
"""
from __future__ import annotations

from pathlib import Path

from mixformerv2.data.datasets.annotations import (check_length, first_line, invalid_box_issue, positive_size,
                                                   read_boxes, read_flag_line)
from mixformerv2.data.datasets.base import DatasetReader, names_from_override_or_package, numbered_frames
from mixformerv2.data.sequence import Sequence

_SPLITS = {"test": ("testing_set.txt", "lasot_test_split.txt"),
           "train": ("training_set.txt", "lasot_train_split.txt")}


class LaSOT(DatasetReader):
    """LaSOT split ``"test"`` (280 videos, reader name ``lasot``) or ``"train"`` (1120, ``lasot_train``)."""

    whole_folder = True

    def __init__(self, root: str | Path, split: str = "test"):
        if split not in _SPLITS:
            raise ValueError(f"LaSOT: unknown split {split!r}; known: {sorted(_SPLITS)}")
        self.name = "lasot" if split == "test" else "lasot_train"
        self.split = split
        override_file, packaged_file = _SPLITS[split]
        super().__init__(root, names_from_override_or_package(Path(root), override_file, packaged_file))

    def _load(self, sequence_name: str) -> Sequence:
        object_class = sequence_name.rsplit("-", 1)[0]
        folder = self.root / object_class / sequence_name
        gt_path = folder / "groundtruth.txt"
        gt_xywh = read_boxes(gt_path, ",")
        n = len(gt_xywh)
        full_occlusion = read_flag_line(folder / "full_occlusion.txt")
        out_of_view = read_flag_line(folder / "out_of_view.txt")
        check_length(folder / "full_occlusion.txt", len(full_occlusion), n, gt_path.name)
        check_length(folder / "out_of_view.txt", len(out_of_view), n, gt_path.name)
        absent = full_occlusion | out_of_view
        visible = ~absent & positive_size(gt_xywh)
        issue = invalid_box_issue(gt_path, gt_xywh, flagged_absent=absent)
        return Sequence(
            name=sequence_name, dataset=self.name,
            frame_paths=numbered_frames(folder / "img", 1, n, 8, "jpg"),
            gt_xywh=gt_xywh, visible=visible, object_class=object_class,
            language=first_line(folder / "nlp.txt"),
            meta={"split": self.split, "full_occlusion": full_occlusion, "out_of_view": out_of_view,
                  "absent": absent},
            annotation_issues=(issue,) if issue else (),
        )


class LaSOTExt(LaSOT):
    """The LaSOT extension subset (150 test videos, 15 classes x 10; reader name ``lasot_ext``). Same layout as
    LaSOT under its own root; ``<root>/testing_set.txt`` overrides the packaged list."""

    def __init__(self, root: str | Path, split: str = "test"):
        if split != "test":
            raise ValueError(f"LaSOT_ext: unknown split {split!r}; it has only 'test'")
        self.name = "lasot_ext"
        self.split = split
        DatasetReader.__init__(self, root, names_from_override_or_package(
            Path(root), "testing_set.txt", "lasot_extension_subset.txt"))

