"""Profile a model (parameters, FLOPs, latency of the full forward and the cached path), or write the speed table

A thin wrapper: the tool is ``mixformerv2/commands/profile_model.py``, installed as ``mixformerv2-profile-model``
(``python -m mixformerv2.commands.profile_model``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.profile_model import main

if __name__ == "__main__":
    sys.exit(main())
