"""Readers driven by a packaged sequence table (UAV123, OTB-100, NfS): one row per sequence giving the frame folder,
the frame range, the zero padding, the extension, the annotation file, the class and the frames to omit.

Frames are ``<root>/<path>/<frame:0{nz}d>.<ext>`` for ``start_frame + init_omit .. end_frame``; row 0 of the
annotation file belongs to ``start_frame`` and the first ``init_omit`` rows are dropped. The annotation file has
``end_frame - start_frame + 1`` rows; more raise, fewer leave the frames after the last row out with an
``unannotated_frames`` annotation issue (the toolkits cut results to the ground truth). ``visible`` = the row is not
NaN and w > 0 and h > 0; rows with a zero or negative width or height other than ``0,0,0,0`` are invalid frames
reported as an ``invalid_box`` issue. ``meta``: ``start_frame``, ``end_frame``, ``init_omit`` (1-based frame numbers
as in the table).
"""
from __future__ import annotations

from pathlib import Path

from mixformerv2.data.datasets.annotations import (check_length, invalid_box_issue, positive_size, read_boxes,
                                                   unannotated_frames_issue)
from mixformerv2.data.datasets.base import DatasetReader, numbered_frames, packaged_table
from mixformerv2.data.sequence import Sequence


class TableReader(DatasetReader):
    """Base of the table-driven readers. Subclasses set ``name``, ``table_file``, ``delimiter`` (see
    :func:`~mixformerv2.data.datasets.annotations.read_boxes`) and ``allow_nan``."""

    table_file: str = ""
    delimiter: str | None = ","
    allow_nan: bool = False

    def __init__(self, root: str | Path, split: str = "test"):
        if split != "test":
            raise ValueError(f"{self.name}: unknown split {split!r}; it has only 'test'")
        self._rows = {row["name"]: row for row in packaged_table(self.table_file)}
        super().__init__(root, list(self._rows))

    def _frame_folder(self, row: dict[str, str], first_frame: int, nz: int) -> tuple[Path, str]:
        """Folder and extension of the frames of ``row``; a hook for sequences stored in more than one way."""
        return self.root / row["path"], row["ext"]

    def _load(self, sequence_name: str) -> Sequence:
        row = self._rows[sequence_name]
        start, end, nz = int(row["start_frame"]), int(row["end_frame"]), int(row["nz"])
        init_omit = int(row["init_omit"] or 0)
        gt_path = self.root / row["anno_path"]
        gt_xywh = read_boxes(gt_path, self.delimiter, allow_nan=self.allow_nan)
        frame_range = f"the frame range {start}-{end} of {sequence_name}"
        issues = []
        if len(gt_xywh) < end - start + 1:
            issues.append(unannotated_frames_issue(gt_path, len(gt_xywh), end - start + 1, frame_range))
        else:
            check_length(gt_path, len(gt_xywh), end - start + 1, frame_range)
        gt_xywh = gt_xywh[init_omit:]
        issues.append(invalid_box_issue(gt_path, gt_xywh, first_line=init_omit + 1))
        folder, ext = self._frame_folder(row, start + init_omit, nz)
        meta = {"start_frame": start, "end_frame": end, "init_omit": init_omit}
        meta.update({k: v for k, v in row.items() if k not in _COMMON_COLUMNS})
        return Sequence(name=sequence_name, dataset=self.name,
                        frame_paths=numbered_frames(folder, start + init_omit, len(gt_xywh), nz, ext),
                        gt_xywh=gt_xywh, visible=positive_size(gt_xywh), object_class=row["object_class"] or None,
                        meta=meta, annotation_issues=tuple(i for i in issues if i is not None))


_COMMON_COLUMNS = ("name", "path", "start_frame", "end_frame", "nz", "ext", "anno_path", "object_class", "init_omit")
