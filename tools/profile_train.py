"""Training throughput of a stage config: samples/s, ms per iteration split into data wait, forward, backward and

A thin wrapper: the tool is ``mixformerv2/commands/profile_train.py``, installed as ``mixformerv2-profile-train``
(``python -m mixformerv2.commands.profile_train``); ``--help`` describes it.
"""
import sys

from mixformerv2.commands.profile_train import main

if __name__ == "__main__":
    sys.exit(main())
