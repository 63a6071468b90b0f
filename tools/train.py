"""Train one stage (teacher, dense_to_sparse, ...) as its config says; the same command runs under torchrun.

A thin wrapper: the tool is ``mixformerv2/commands/train.py``, installed as ``mixformerv2-train``
(``python -m mixformerv2.commands.train``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
