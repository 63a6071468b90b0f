"""Time tools/analyze.py on a LaSOT-sized fake benchmark (280 sequences, 685,360 frames) written to a temp folder.

A thin wrapper: the tool is ``mixformerv2/commands/profile_eval.py``, installed as ``mixformerv2-profile-eval``
(``python -m mixformerv2.commands.profile_eval``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.profile_eval import main

if __name__ == "__main__":
    sys.exit(main())
