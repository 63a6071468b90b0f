"""Check our implementation against golden outputs of the official one.

A thin wrapper: the tool is ``mixformerv2/commands/parity.py``, installed as ``mixformerv2-parity``
(``python -m mixformerv2.commands.parity``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.parity import main

if __name__ == "__main__":
    sys.exit(main())
