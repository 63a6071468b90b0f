"""Accuracy cost of each backend and precision: track one benchmark with each, report AUC and agreement.

A thin wrapper: the tool is ``mixformerv2/commands/compare_backends.py``, installed as ``mixformerv2-compare-backends``
(``python -m mixformerv2.commands.compare_backends``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.compare_backends import main

if __name__ == "__main__":
    sys.exit(main())
