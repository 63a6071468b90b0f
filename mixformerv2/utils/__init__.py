"""Helpers every layer may use: durable writes (io), errors, logging set-up (log), devices (device), code version
(version) and the shared command-line plumbing of the tools (cli).

This package imports nothing else from ``mixformerv2``, and its ``__init__`` imports none of its modules, so that
``mixformerv2.utils.io`` stays cheap (``device`` imports torch; ``cli`` does not).
"""
