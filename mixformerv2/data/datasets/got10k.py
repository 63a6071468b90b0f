"""GOT-10k: the official ``val`` and ``test`` splits and the training splits used by MixFormerV2.

Layout: ``<root>/{train,val,test}/list.txt`` (one sequence name per line) and ``<root>/<split>/<name>/`` holding
``00000001.jpg ...`` (8 digits, 1-based), ``groundtruth.txt`` (comma-separated x,y,w,h floats), the per-frame labels
``absence.label`` (0/1), ``cover.label`` (0..8, visible ratio = cover / 8) and ``cut_by_image.label`` (0/1), and
``meta_info.ini`` (a header line, then ``key: value`` lines; ``resolution: (W, H)``).

Splits:
  * ``val``, ``test``: the sequences of ``<root>/<split>/list.txt``. The test ground truth holds the first frame only:
    later rows are NaN and invisible, and the frames are all ``*.jpg`` of the folder in numeric order.
  * ``train``, ``ltrval``, ``vottrain``, ``votval``, ``train_full``: 0-based indices (packaged files
    ``got10k_train_split.txt`` 7934, ``got10k_val_split.txt`` 1401, ``got10k_vot_train_split.txt`` 7086,
    ``got10k_vot_val_split.txt`` 1249, ``got10k_train_full_split.txt`` 9335) into ``<root>/train/list.txt`` read in
    file order. ``ltrval`` is a hold-out of the official train set, not the official val set. An index file of the
    same name at ``<root>/<file>`` overrides the packaged one. When ``list.txt`` is not the official 9335-name list
    (synthetic or custom data) and there is no override, ``train_full`` means every name of ``list.txt`` in file
    order and the other training splits raise.

Frames are ``00000001.jpg .. N`` for N ground-truth rows (train and val). ``visible`` = absence == 0 and cover > 0
and w > 0 and h > 0 (labels that are missing, as in some custom copies, are treated as "present, fully visible").
Rows with a zero or negative width or height are invalid frames, reported as an ``invalid_box`` annotation issue
unless they are ``0,0,0,0`` on a frame the labels call absent.
``meta``: ``absence``, ``cut_by_image``, ``absent`` (absence or cover == 0), each (N,) bool, ``cover`` (N,) int,
``resolution`` (W, H) and the other ``meta_info.ini`` entries (strings) when the file exists.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np

from mixformerv2.data.datasets.annotations import (AnnotationError, check_length, first_frame_ground_truth,
                                                   invalid_box_issue, positive_size, read_boxes, read_int_column)
from mixformerv2.data.datasets.base import (DatasetReader, FrameList, list_image_files, packaged_names,
                                            read_name_list, sort_numerically)
from mixformerv2.data.sequence import Sequence

logger = logging.getLogger(__name__)

INDEX_SPLITS = {
    "train": "got10k_train_split.txt",
    "ltrval": "got10k_val_split.txt",
    "vottrain": "got10k_vot_train_split.txt",
    "votval": "got10k_vot_val_split.txt",
    "train_full": "got10k_train_full_split.txt",
}
OFFICIAL_TRAIN_SIZE = 9335


class GOT10k(DatasetReader):
    """One GOT-10k split (see the module docstring); reader name ``got10k_<split>``."""

    whole_folder = True

    def __init__(self, root: str | Path, split: str = "val"):
        if split not in INDEX_SPLITS and split not in ("val", "test"):
            raise ValueError(f"GOT-10k: unknown split {split!r}; known: {sorted([*INDEX_SPLITS, 'val', 'test'])}")
        self.name = f"got10k_{split}"
        self.split = split
        root = Path(root)
        self.split_dir = root / ("train" if split in INDEX_SPLITS else split)
        names = read_name_list(self.split_dir / "list.txt")
        if split in INDEX_SPLITS:
            names = _select_by_index(root, self.split_dir / "list.txt", names, split)
        super().__init__(root, names)

    def _load(self, sequence_name: str) -> Sequence:
        folder = self.split_dir / sequence_name
        gt_path = folder / "groundtruth.txt"
        gt_xywh = read_boxes(gt_path, ",")
        meta = {"split": self.split, **_read_meta_info(folder / "meta_info.ini")}
        if self.split == "test":
            issue = invalid_box_issue(gt_path, gt_xywh)
            frame_names = sort_numerically(folder, [n for n in list_image_files(folder) if n.endswith(".jpg")])
            gt_xywh, visible = first_frame_ground_truth(gt_path, gt_xywh, len(frame_names))
            frames = FrameList.listed(folder, frame_names)
        else:
            n = len(gt_xywh)
            labels = _read_labels(folder, n)
            visible = positive_size(gt_xywh) & ~labels["absent"]
            issue = invalid_box_issue(gt_path, gt_xywh, flagged_absent=labels["absent"])
            meta.update(labels)
            frames = FrameList.numbered(folder, 1, n, 8, "jpg")
        object_class = meta.get("object_class")
        return Sequence(name=sequence_name, dataset=self.name, frame_paths=frames, gt_xywh=gt_xywh,
                        visible=visible, object_class=object_class or None, meta=meta,
                        annotation_issues=(issue,) if issue else ())


def _select_by_index(root: Path, list_path: Path, names: list[str], split: str) -> list[str]:
    file_name = INDEX_SPLITS[split]
    override = root / file_name
    if override.is_file():
        logger.info("%s: using this index file instead of the packaged one", override)
        lines, source = read_name_list(override), override
    elif len(names) != OFFICIAL_TRAIN_SIZE and split == "train_full":
        logger.info("%s: %d names (not the official train list); train_full uses all of them", list_path, len(names))
        return names
    else:
        lines, source = packaged_names(file_name), f"packaged {file_name}"
    try:
        indices = [int(line) for line in lines]
    except ValueError:
        raise ValueError(f"{source}: GOT-10k split files hold integer indices into {list_path}") from None
    if indices and (max(indices) >= len(names) or min(indices) < 0):
        raise ValueError(
            f"{list_path}: has {len(names)} names but {source} indexes up to {max(indices)}; this is not the "
            f"official GOT-10k train list: put an index file at {override} or use split 'train_full'")
    return [names[i] for i in indices]


def _read_labels(folder: Path, n: int) -> dict[str, np.ndarray]:
    """The per-frame label files as (N,) arrays; a missing file counts as "present, fully visible"."""
    labels = {}
    for key, default in (("absence", 0), ("cover", 8), ("cut_by_image", 0)):
        path = folder / f"{key}.label"
        if path.is_file():
            values = read_int_column(path)
            check_length(path, len(values), n, "groundtruth.txt")
        else:
            logger.debug("%s: missing, using %d for every frame", path, default)
            values = np.full(n, default, dtype=np.int64)
        labels[key] = values
    if ((labels["cover"] < 0) | (labels["cover"] > 8)).any():
        raise AnnotationError(folder / "cover.label", "cover value outside 0..8",
                              line=int(np.flatnonzero((labels["cover"] < 0) | (labels["cover"] > 8))[0]) + 1)
    absence = labels["absence"].astype(bool)
    return {"absence": absence, "cover": labels["cover"], "cut_by_image": labels["cut_by_image"].astype(bool),
            "absent": absence | (labels["cover"] == 0)}


def _read_meta_info(path: Path) -> dict:
    """``meta_info.ini`` as a dict of strings, ``resolution`` parsed to (W, H) ints; {} when the file is missing."""
    if not path.is_file():
        return {}
    meta = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    if "resolution" in meta:
        try:
            width, height = ast.literal_eval(meta["resolution"])
            meta["resolution"] = (int(width), int(height))
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(f"{path}: resolution {meta['resolution']!r} is not '(W, H)'") from None
    return meta
