"""Reproduce the paper's main table: track every benchmark with its official settings, score it, compare.

A thin wrapper: the tool is ``mixformerv2/commands/reproduce.py``, installed as ``mixformerv2-reproduce``
(``python -m mixformerv2.commands.reproduce``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
