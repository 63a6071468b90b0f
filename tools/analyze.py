"""Score tracker result files on a benchmark with the official rules, print a table, write JSON and plots.

A thin wrapper: the tool is ``mixformerv2/commands/analyze.py``, installed as ``mixformerv2-analyze``
(``python -m mixformerv2.commands.analyze``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.analyze import main

if __name__ == "__main__":
    sys.exit(main())
