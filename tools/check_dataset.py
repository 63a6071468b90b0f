"""Verify a benchmark copy on disk: missing sequences and frames, unreadable frames, bad ground-truth rows and length

A thin wrapper: the tool is ``mixformerv2/commands/check_dataset.py``, installed as ``mixformerv2-check-dataset``
(``python -m mixformerv2.commands.check_dataset``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.check_dataset import main

if __name__ == "__main__":
    sys.exit(main())
