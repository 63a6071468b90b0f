"""Export the tracker's network to ONNX: the template encoder and the per-frame step, checked, with a manifest.

A thin wrapper: the tool is ``mixformerv2/commands/export.py``, installed as ``mixformerv2-export``
(``python -m mixformerv2.commands.export``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
