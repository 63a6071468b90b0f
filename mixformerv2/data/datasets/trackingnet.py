"""TrackingNet: the test chunk (511 videos, first-frame ground truth only) and the 12 training chunks.

Layout: ``<root>/TEST/`` and ``<root>/TRAIN_0 .. TRAIN_11/``, each with ``anno/<video>.txt`` (comma-separated
x,y,w,h) and ``frames/<video>/0.jpg, 1.jpg, ...`` (0-based, not zero-padded). Chunk folders are matched
case-insensitively (the devkit README draws ``Test``/``Train_X``; the loaders use ``TEST``/``TRAIN_k``).

Sequences are the ``anno/*.txt`` files of the chosen chunks, sorted by name (the rule of the official loaders, so
synthetic copies need no list). For the test split, when every video on disk is one of the 511 official test videos
(packaged ``trackingnet_test_split.txt``), the reader lists all 511 so that an incomplete copy fails loudly (reading a
missing video raises, and the checker reports it) instead of being evaluated on fewer videos. Test: the frames are every ``*.jpg`` of the video folder sorted by the integer value
of the stem; rows after the first are NaN and invisible. Train: frames ``0.jpg .. (N-1).jpg`` for N rows.
``visible`` = w > 0 and h > 0; other rows than ``0,0,0,0`` without a positive size are reported as an
``invalid_box`` annotation issue. ``meta``: ``chunk`` (folder name). Classes are not read (``object_class`` None).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mixformerv2.data.datasets.annotations import (first_frame_ground_truth, invalid_box_issue, positive_size,
                                                   read_boxes)
from mixformerv2.data.datasets.base import (DatasetReader, FrameList, list_image_files, numbered_frames,
                                            packaged_names, sort_numerically)
from mixformerv2.data.sequence import Sequence

logger = logging.getLogger(__name__)

NUM_TRAIN_CHUNKS = 12


class TrackingNet(DatasetReader):
    """TrackingNet ``split="test"`` (reader name ``trackingnet``) or ``split="train"`` (``trackingnet_train``) with
    ``chunks`` = training chunk numbers (default: all of 0..11 that exist, a warning naming the missing ones)."""

    whole_folder = True

    def __init__(self, root: str | Path, split: str = "test", chunks: list[int] | tuple[int, ...] | None = None):
        root = Path(root)
        if split == "test":
            if chunks is not None:
                raise ValueError("TrackingNet: chunks apply to the train split only")
            chunk_dirs = [_chunk_dir(root, "TEST", required=True)]
        elif split == "train":
            wanted = list(range(NUM_TRAIN_CHUNKS)) if chunks is None else [int(k) for k in chunks]
            found = {k: _chunk_dir(root, f"TRAIN_{k}", required=chunks is not None) for k in wanted}
            missing = [k for k, d in found.items() if d is None]
            if missing:
                logger.warning("%s: TrackingNet training chunks %s are missing; using the others", root, missing)
            chunk_dirs = [d for d in found.values() if d is not None]
            if not chunk_dirs:
                raise FileNotFoundError(f"{root}: no TrackingNet TRAIN_<k> chunk folder")
        else:
            raise ValueError(f"TrackingNet: unknown split {split!r}; known: ['test', 'train']")
        self.name = "trackingnet" if split == "test" else "trackingnet_train"
        self.split = split
        self._chunk_of: dict[str, Path] = {}
        names: list[str] = []
        for chunk_dir in chunk_dirs:
            for name in _list_annotations(chunk_dir / "anno"):
                if name in self._chunk_of:
                    raise ValueError(f"{chunk_dir / 'anno' / name}.txt: video also in {self._chunk_of[name]}")
                self._chunk_of[name] = chunk_dir
                names.append(name)
        if split == "test":
            names = _official_test_names(chunk_dirs[0], names, self._chunk_of)
        super().__init__(root, names)

    def _load(self, sequence_name: str) -> Sequence:
        chunk_dir = self._chunk_of[sequence_name]
        gt_path = chunk_dir / "anno" / f"{sequence_name}.txt"
        gt_xywh = read_boxes(gt_path, ",")  # a listed official video without a file raises FileNotFoundError
        issue = invalid_box_issue(gt_path, gt_xywh)
        folder = chunk_dir / "frames" / sequence_name
        if self.split == "test":
            frame_names = sort_numerically(folder, [n for n in list_image_files(folder) if n.endswith(".jpg")])
            gt_xywh, visible = first_frame_ground_truth(gt_path, gt_xywh, len(frame_names))
            frames = FrameList.listed(folder, frame_names)
        else:
            visible = positive_size(gt_xywh)
            frames = numbered_frames(folder, 0, len(gt_xywh), 0, "jpg")
        return Sequence(name=sequence_name, dataset=self.name, frame_paths=frames, gt_xywh=gt_xywh,
                        visible=visible, meta={"split": self.split, "chunk": chunk_dir.name},
                        annotation_issues=(issue,) if issue else ())


def _official_test_names(test_dir: Path, names: list[str], chunk_of: dict[str, Path]) -> list[str]:
    official = packaged_names("trackingnet_test_split.txt")
    if not names or not set(names) <= set(official):
        return names
    if len(names) < len(official):
        logger.warning("%s: %d of the %d official test videos are missing", test_dir / "anno",
                       len(official) - len(names), len(official))
        for name in official:
            chunk_of.setdefault(name, test_dir)
    return official


def _chunk_dir(root: Path, wanted: str, *, required: bool) -> Path | None:
    exact = root / wanted
    if exact.is_dir():
        return exact
    if root.is_dir():
        for entry in os.listdir(root):
            if entry.lower() == wanted.lower() and (root / entry).is_dir():
                return root / entry
    if required:
        raise FileNotFoundError(f"{exact}: TrackingNet chunk folder is missing")
    return None


def _list_annotations(anno_dir: Path) -> list[str]:
    try:
        return sorted(n[:-4] for n in os.listdir(anno_dir) if n.endswith(".txt"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{anno_dir}: TrackingNet annotation folder is missing") from None
