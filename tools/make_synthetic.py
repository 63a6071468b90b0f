"""Write synthetic tracking videos in the LaSOT and GOT-10k on-disk formats.

A thin wrapper: the tool is ``mixformerv2/commands/make_synthetic.py``, installed as ``mixformerv2-make-synthetic``
(``python -m mixformerv2.commands.make_synthetic``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main())
