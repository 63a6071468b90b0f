"""Evaluate our tracker with the official VOT toolkit: prepare a workspace, then run evaluate / analysis / report.

A thin wrapper: the tool is ``mixformerv2/commands/vot.py``, installed as ``mixformerv2-vot``
(``python -m mixformerv2.commands.vot``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.vot import main

if __name__ == "__main__":
    sys.exit(main())
