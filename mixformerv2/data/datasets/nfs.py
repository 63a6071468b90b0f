"""NfS (Need for Speed), the 30-fps set of 100 sequences used by pytracking-family trackers.

Layout (pytracking's reorganisation, not the raw archive): frames ``<root>/sequences/<video>/00001.jpg`` (5 digits),
annotations ``<root>/anno/nfs_<video>.txt`` with TAB-separated x,y,w,h. Names carry the ``nfs_`` prefix. Ranges come
from the packaged ``nfs30.tsv``; ``meta['occlusion']`` is its per-sequence ``True``/``False`` string.
"""
from __future__ import annotations

from mixformerv2.data.datasets.table import TableReader


class NfS(TableReader):
    """NfS 30 fps (reader name ``nfs``)."""

    name = "nfs"
    table_file = "nfs30.tsv"
    delimiter = "\t"
