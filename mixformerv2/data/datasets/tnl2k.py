"""TNL2K: 700 test and 1300 train videos with a language description.

Layout: ``<root>/<video>/`` with ``imgs/`` (the frames), ``groundtruth.txt`` (comma-separated x,y,w,h, 0-based
integers) and ``language.txt``. Point the root at one split (the test root holds the 700 test folders).

Sequence list: ``<root>/TNL2K_testing_set.txt`` / ``<root>/TNL2K_train_set.txt`` (the toolkit's file names, one
name per line) override the packaged official lists (``tnl2k_test_split.txt``, ``tnl2k_train_split.txt``).

Quirks kept: the frames are every image file of ``imgs/`` sorted by file name, whatever its extension (one test video
has a replacement ``00000492.png`` among ``.jpg`` frames); the language is the first line, stripped and lower-cased
(as OSTrack reads it); boxes may have x <= 0 or y <= 0; ``0,0,0,0`` rows mark absent targets (no absence file is
read), so ``visible`` = w > 0 and h > 0. A negative width or height raises, unless ``strict=False``, which keeps the
row and marks it invisible with a warning.
"""
from __future__ import annotations

from pathlib import Path

from mixformerv2.data.datasets.annotations import check_length, first_line, read_boxes
from mixformerv2.data.datasets.base import DatasetReader, FrameList, list_image_files, names_from_override_or_package
from mixformerv2.data.sequence import Sequence

_SPLITS = {"test": ("TNL2K_testing_set.txt", "tnl2k_test_split.txt"),
           "train": ("TNL2K_train_set.txt", "tnl2k_train_split.txt")}


class TNL2k(DatasetReader):
    """TNL2K ``split="test"`` (reader name ``tnl2k``) or ``"train"`` (``tnl2k_train``)."""

    def __init__(self, root: str | Path, split: str = "test", strict: bool = True):
        if split not in _SPLITS:
            raise ValueError(f"TNL2K: unknown split {split!r}; known: {sorted(_SPLITS)}")
        self.name = "tnl2k" if split == "test" else "tnl2k_train"
        self.split = split
        self.strict = strict
        override_file, packaged_file = _SPLITS[split]
        super().__init__(root, names_from_override_or_package(Path(root), override_file, packaged_file))

    def _load(self, sequence_name: str) -> Sequence:
        folder = self.root / sequence_name
        gt_path = folder / "groundtruth.txt"
        gt_xywh = read_boxes(gt_path, ",", allow_negative_size=not self.strict)
        frame_names = sorted(list_image_files(folder / "imgs"))
        check_length(gt_path, len(gt_xywh), len(frame_names), f"{folder / 'imgs'} (image files)")
        visible = (gt_xywh[:, 2] > 0) & (gt_xywh[:, 3] > 0)
        language = first_line(folder / "language.txt")
        frames = FrameList.listed(folder / "imgs", frame_names)
        return Sequence(name=sequence_name, dataset=self.name, frame_paths=frames, gt_xywh=gt_xywh,
                        visible=visible, language=language.lower() if language is not None else None,
                        meta={"split": self.split})
