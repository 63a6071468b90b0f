"""What every benchmark reader shares: the reader interface, lazy frame-path lists and the packaged split lists.

A reader is cheap: building it reads at most a sequence list, and ``reader[i]`` reads the annotation files of one
sequence (and may list its frame folder) but never opens an image. Frames are not needed to read annotations: the
benchmarks' evaluation toolkits ship annotation files without frames, and scoring works on such a copy. A sequence
whose frame folder is missing gets a :class:`FrameList` of the ground truth's length that raises
``FileNotFoundError`` naming the folder when a frame path is asked for, i.e. only when tracking or training starts.
"""
from __future__ import annotations

import collections.abc
import csv
import logging
import os
from importlib import resources
from pathlib import Path

from mixformerv2.data.sequence import Sequence

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class FrameList(collections.abc.Sequence):
    """The N frame paths of one sequence, made on access: behaves like a read-only ``tuple[Path, ...]`` (len,
    ``[i]`` -> Path, ``[a:b]`` -> tuple, iteration, equality with tuples and lists) without building N Path objects
    up front, which costs more than reading the ground truth.

    Numbered frames are ``folder / f"{start + i:0{nz}d}.{ext}"`` (nz=0: no padding); listed frames are
    ``folder / names[i]``; an unavailable list has a length but raises ``FileNotFoundError`` (its ``missing_reason``)
    for any path.
    """

    __slots__ = ("folder", "_names", "_start", "_count", "_nz", "_ext", "missing_reason")

    def __init__(self, folder: str | Path, *, names: list[str] | None = None, start: int = 0, count: int = 0,
                 nz: int = 0, ext: str = "jpg", missing_reason: str | None = None):
        self.folder = Path(folder)
        self._names = list(names) if names is not None else None
        self._start, self._count, self._nz, self._ext = start, count, nz, ext
        self.missing_reason = missing_reason

    @classmethod
    def numbered(cls, folder: str | Path, start: int, count: int, nz: int, ext: str) -> "FrameList":
        """Frames ``start .. start+count-1`` named with ``nz``-digit zero padding and extension ``ext``."""
        return cls(folder, start=start, count=count, nz=nz, ext=ext)

    @classmethod
    def listed(cls, folder: str | Path, names: list[str]) -> "FrameList":
        """Frames given by their file names inside ``folder``, in order."""
        return cls(folder, names=names)

    @classmethod
    def unavailable(cls, folder: str | Path, count: int, reason: str) -> "FrameList":
        """``count`` frames that cannot be read from ``folder`` (missing folder, missing files): ``len`` works, a path
        raises ``FileNotFoundError(reason)``."""
        return cls(folder, count=count, missing_reason=reason)

    def __len__(self) -> int:
        return len(self._names) if self._names is not None else self._count

    def file_name(self, index: int) -> str:
        """File name (no folder) of frame ``index`` (0-based, negative counts from the end)."""
        if self.missing_reason is not None:
            raise FileNotFoundError(self.missing_reason)
        if self._names is not None:
            return self._names[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} out of range for {self._count} frames in {self.folder}")
        return f"{self._start + index:0{self._nz}d}.{self._ext}" if self._nz else f"{self._start + index}.{self._ext}"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        return self.folder / self.file_name(index)

    def __iter__(self):
        folder = str(self.folder)
        for i in range(len(self)):
            yield Path(folder, self.file_name(i))

    def __eq__(self, other) -> bool:
        unavailable = self.missing_reason is not None or getattr(other, "missing_reason", None) is not None
        if unavailable:
            return isinstance(other, FrameList) and (self.folder, len(self), self.missing_reason) == (
                other.folder, len(other), other.missing_reason)
        if isinstance(other, (FrameList, tuple, list)):
            return len(self) == len(other) and all(Path(a) == Path(b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        if self.missing_reason is not None:
            return f"FrameList({self.folder}, {len(self)} frames, unavailable)"
        first = self.file_name(0) if len(self) else ""
        return f"FrameList({self.folder}, {len(self)} frames, first={first!r})"


def missing_folder_reason(folder: Path) -> str:
    """The error of a frame folder that does not exist (an annotation-only copy, as the toolkits ship)."""
    return f"{folder}: frame folder is missing (this copy holds annotations only; tracking and training need frames)"


def numbered_frames(folder: Path, start: int, count: int, nz: int, ext: str) -> FrameList:
    """``FrameList.numbered``, or an unavailable list naming ``folder`` when it does not exist (one ``stat``)."""
    if not folder.is_dir():
        return FrameList.unavailable(folder, count, missing_folder_reason(folder))
    return FrameList.numbered(folder, start, count, nz, ext)


class DatasetReader:
    """A benchmark split on disk: ``name``, ``len(reader)``, ``reader.sequence_names`` and ``reader[i or name]`` ->
    :class:`~mixformerv2.data.sequence.Sequence`.

    Subclasses set ``name`` and the sequence list in ``__init__`` and implement ``_load(sequence_name)``.
    ``whole_folder`` is True when a sequence's frames are all the images of one folder, so a checker may count
    the files there to find frames without ground truth. A sequence's ``annotation_issues`` are logged as warnings
    the first time this reader loads it (once per sequence, however often it is read).
    """

    name: str = ""
    whole_folder: bool = False

    def __init__(self, root: str | Path, sequence_names: list[str]):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset root of {self.name} does not exist")
        self._names = list(sequence_names)
        self._index = {n: i for i, n in enumerate(self._names)}
        self._reported: set[str] = set()
        if len(self._index) != len(self._names):
            duplicate = next(n for n in self._names if self._names.count(n) > 1)
            raise ValueError(f"{self.name}: sequence {duplicate!r} is listed twice")

    @property
    def sequence_names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, key: int | str) -> Sequence:
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"{self.name}: no sequence named {key!r} (root {self.root})")
            return self._reported_load(key)
        return self._reported_load(self._names[key])

    def __iter__(self):
        for name in self._names:
            yield self._reported_load(name)

    def _reported_load(self, sequence_name: str) -> Sequence:
        sequence = self._load(sequence_name)
        if sequence.annotation_issues and sequence_name not in self._reported:
            self._reported.add(sequence_name)
            for issue in sequence.annotation_issues:
                logger.warning("%s: %s", self.name, issue.message)
        return sequence

    def _load(self, sequence_name: str) -> Sequence:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r}, sequences={len(self)})"


def packaged_names(file_name: str) -> list[str]:
    """Lines of a packaged split list in ``mixformerv2/data/specs`` (names or indices), blank lines dropped."""
    text = resources.files("mixformerv2.data").joinpath("specs", file_name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def packaged_table(file_name: str) -> list[dict[str, str]]:
    """Rows of a packaged TAB-separated sequence table (header line first) as dicts of strings."""
    text = resources.files("mixformerv2.data").joinpath("specs", file_name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def read_name_list(path: str | Path) -> list[str]:
    """One sequence name per line of a text file, blank lines dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: sequence list is missing") from None
    return [line.strip() for line in lines if line.strip()]


def names_from_override_or_package(root: Path, override_file: str, packaged_file: str) -> list[str]:
    """The sequence list in ``root/override_file`` when present (synthetic or custom data), else the packaged
    official list."""
    override = root / override_file
    if override.is_file():
        logger.info("%s: using this sequence list instead of the packaged %s", override, packaged_file)
        return read_name_list(override)
    return packaged_names(packaged_file)


def list_image_files(folder: Path) -> list[str]:
    """Names of the image files in ``folder`` (any of IMAGE_SUFFIXES, case-insensitive), unsorted; a missing folder
    raises ``FileNotFoundError`` naming it."""
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES]
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder}: frame folder is missing") from None


def sort_numerically(folder: Path, names: list[str]) -> list[str]:
    """Frame file names sorted by the integer value of their stem (TrackingNet ``0.jpg, 1.jpg, ..., 10.jpg``)."""
    try:
        return sorted(names, key=lambda n: int(os.path.splitext(n)[0]))
    except ValueError:
        bad = next(n for n in names if not os.path.splitext(n)[0].isdigit())
        raise ValueError(f"{folder / bad}: frame name is not a number") from None
