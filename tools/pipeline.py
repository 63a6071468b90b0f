"""Run a chain of training stages from a pipeline file: each stage resumable, finished stages skipped, final models

A thin wrapper: the tool is ``mixformerv2/commands/pipeline.py``, installed as ``mixformerv2-pipeline``
(``python -m mixformerv2.commands.pipeline``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
