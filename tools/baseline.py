"""Write a trivial baseline's results in the runner's layout, for tools/analyze.py to score beside real runs.

A thin wrapper: the tool is ``mixformerv2/commands/baseline.py``, installed as ``mixformerv2-baseline``
(``python -m mixformerv2.commands.baseline``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.baseline import main

if __name__ == "__main__":
    sys.exit(main())
