"""Pack results for the GOT-10k / TrackingNet servers, or check a submission zip before uploading it.

A thin wrapper: the tool is ``mixformerv2/commands/pack.py``, installed as ``mixformerv2-pack``
(``python -m mixformerv2.commands.pack``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.pack import main

if __name__ == "__main__":
    sys.exit(main())
