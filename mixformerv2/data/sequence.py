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


class FrameError(OSError):
    """A frame file that cannot be decoded or is cut short. ``str()`` is ``"<path>: <reason>"``; ``reason`` alone
    is kept for messages that name the file their own way."""

    def __init__(self, path: str | Path, reason: str = ""):
        super().__init__(f"{path}: {reason}" if reason else str(path))
        self.reason = reason


def read_frame_rgb(path: str | Path) -> np.ndarray:
    """Read one frame as (H, W, 3) uint8 RGB (EXIF orientation applied, as ``cv2.imread`` does).

    A missing file raises ``FileNotFoundError``; a file that cannot be decoded, or a JPEG/PNG cut short (which the
    decoder would otherwise fill with grey without a word), raises ``FrameError``; both name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame file is missing")
    data = path.read_bytes()
    problem = truncation_problem(data)
    if problem:
        raise FrameError(path, f"is cut short ({problem})")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise FrameError(path, "cannot be decoded (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # the IEND chunk type and its fixed CRC: the last 8 bytes of every PNG


def truncation_problem(data: bytes) -> str | None:
    """Why an encoded JPEG or PNG file is incomplete, or None when it ends properly (or is another format).

    JPEG: the end-of-image marker (FFD9) must follow the image data; it is looked for after the first scan, so the
    end marker of an EXIF thumbnail in the header does not count, and bytes after the marker are tolerated.
    PNG: the IEND chunk must be present. Costs a search from the end of the buffer, no decoding."""
    if data[:2] == b"\xff\xd8":
        scan = _jpeg_first_scan(data)
        if scan is None:
            return "JPEG ends inside its header"
        if data.rfind(b"\xff\xd9") < scan:
            return "JPEG has no end-of-image marker"
    elif data[:8] == _PNG_SIGNATURE and data.rfind(_PNG_IEND) < 0:
        return "PNG has no IEND chunk"
    return None


def _jpeg_first_scan(data: bytes) -> int | None:
    """Offset of the first start-of-scan marker (FFDA), found by walking the header segments by their lengths;
    None when the data ends before one."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # stray bytes between segments: decoders skip to the next marker, so do we
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return None
            continue
        marker = data[pos + 1]
        if marker == 0xDA:
            return pos
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill byte or a marker without length
            pos += 1 if marker == 0xFF else 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None
