"""The evaluation/training sequence: frame paths and annotations, never images."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence as Sequence_

import cv2
import numpy as np

from mixformerv2.data.datasets.annotations import AnnotationIssue


@dataclass(frozen=True)
class Sequence:
    """One video of a benchmark.

    frame_paths: N paths, frame 0 first (a list-like; readers may build the paths lazily). gt_xywh: (N, 4) float64
    pixels exactly as the benchmark's files store them (LaSOT, OTB and UAV123 files are 1-based; no shift is applied,
    as in the official toolkits and trackers, so that metrics agree with theirs); rows the benchmark leaves
    unannotated (test-set frames after the first, NaN rows) are NaN. visible: (N,) bool, the target is
    annotated, has a positive width and height, and is in view (occlusion/out-of-view flags where the benchmark has
    them). object_class and language are None where the benchmark has none. meta holds benchmark-specific extras
    (e.g. GOT-10k cover labels, resolution). annotation_issues: what the reader found odd but read as the official
    toolkits do (rows with a non-positive width or height, ground truth shorter than the frames), each naming the
    file and lines; the reader logs them once per sequence and the dataset checker lists them as warnings.
    """

    name: str
    dataset: str
    frame_paths: Sequence_[Path]
    gt_xywh: np.ndarray
    visible: np.ndarray
    object_class: str | None = None
    language: str | None = None
    meta: dict = field(default_factory=dict)
    annotation_issues: tuple[AnnotationIssue, ...] = ()

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def init_box_xywh(self) -> np.ndarray:
        return self.gt_xywh[0]


def read_frame_rgb(path: str | Path) -> np.ndarray:
    """Read one frame as (H, W, 3) uint8 RGB; a missing or unreadable file raises ``FileNotFoundError``/``OSError``
    naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame file is missing")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: frame cannot be decoded (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
