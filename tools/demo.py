"""Track one target through a video file or a folder of frames; write an annotated video and a CSV of boxes.

A thin wrapper: the tool is ``mixformerv2/commands/demo.py``, installed as ``mixformerv2-demo``
(``python -m mixformerv2.commands.demo``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
