"""OTB-100 (OTB2015): 100 sequences.

Layout: ``<root>/<Video>/img/0001.jpg`` (4 digits; ``Board`` uses 5) and ``<root>/<Video>/groundtruth_rect.txt``,
comma- or whitespace-separated x,y,w,h (the delimiter is taken from the first row). Quirks, all from the packaged
``otb100.tsv``: Jogging and Skating2 have two targets (``groundtruth_rect.1.txt``/``.2.txt``, sequences ``_1``/``_2``
sharing one folder); Human4 uses ``groundtruth_rect.2.txt``; David starts at frame 300, BlurCar1 at 247, BlurCar3
at 3, BlurCar4 at 18; Tiger1 omits its first 5 frames and rows (``init_omit``). KiteSurf's frames are looked up as
``KiteSurf/img/*.jpg`` (the table), then ``KiteSurf/img/*.png`` and ``KiteSurf/jpg/*.png`` (pytracking's versions);
this is one file-existence check, no image is opened.
"""
from __future__ import annotations

from pathlib import Path

from mixformerv2.data.datasets.table import TableReader

_FRAME_ALTERNATIVES = {"KiteSurf": (("KiteSurf/img", "png"), ("KiteSurf/jpg", "png"))}


class OTB100(TableReader):
    """OTB-100 (reader name ``otb100``)."""

    name = "otb100"
    table_file = "otb100.tsv"
    delimiter = "auto"

    def _frame_folder(self, row: dict[str, str], first_frame: int, nz: int) -> tuple[Path, str]:
        default = super()._frame_folder(row, first_frame, nz)
        alternatives = _FRAME_ALTERNATIVES.get(row["name"])
        if not alternatives:
            return default
        for folder, ext in (default, *((self.root / path, ext) for path, ext in alternatives)):
            if (folder / f"{first_frame:0{nz}d}.{ext}").is_file():
                return folder, ext
        return default
