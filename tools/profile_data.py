"""Training-data throughput: samples per second through the training loader.

A thin wrapper: the tool is ``mixformerv2/commands/profile_data.py``, installed as ``mixformerv2-profile-data``
(``python -m mixformerv2.commands.profile_data``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.profile_data import main

if __name__ == "__main__":
    sys.exit(main())
