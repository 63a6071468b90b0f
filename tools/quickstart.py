"""The quickstart: the whole MixFormerV2 pipeline on the synthetic benchmark, on a CPU, in minutes (make demo).

A thin wrapper: the tool is ``mixformerv2/commands/quickstart.py``, installed as ``mixformerv2-quickstart``
(``python -m mixformerv2.commands.quickstart``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
