"""Run MixFormerV2 over a benchmark and write per-sequence result files.

A thin wrapper: the tool is ``mixformerv2/commands/test.py``, installed as ``mixformerv2-test``
(``python -m mixformerv2.commands.test``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.test import main

if __name__ == "__main__":
    sys.exit(main())
