"""UAV123: 123 sequences, some of them sub-ranges of one video folder (``bird1_1`` 1-253, ``bird1_2`` 775-1477, ...).

Layout: frames ``<root>/data_seq/UAV123/<video>/000001.jpg`` (6 digits), annotations
``<root>/anno/UAV123/<sequence>.txt`` (comma-separated x,y,w,h). Sequence names carry the ``uav_`` prefix. Rows where
the target is not visible are ``NaN,NaN,NaN,NaN``: they are kept as NaN and marked invisible (UAV123 is the only
benchmark whose files may hold NaN). Ranges come from the packaged ``uav123.tsv``.
"""
from __future__ import annotations

from mixformerv2.data.datasets.table import TableReader


class UAV123(TableReader):
    """UAV123 (reader name ``uav123``)."""

    name = "uav123"
    table_file = "uav123.tsv"
    delimiter = ","
    allow_nan = True
