"""Remove faded layers from a MixFormerV2 checkpoint and renumber the others (official layout).

A thin wrapper: the tool is ``mixformerv2/commands/prune.py``, installed as ``mixformerv2-prune``
(``python -m mixformerv2.commands.prune``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.prune import main

if __name__ == "__main__":
    sys.exit(main())
