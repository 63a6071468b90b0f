"""The command-line tools, one module per tool, each with ``main(argv=None) -> int``.

Installed as console scripts (``mixformerv2-test``, ``mixformerv2-analyze``, ...; the table is
``[project.scripts]`` in ``pyproject.toml``), runnable as ``python -m mixformerv2.commands.<tool>``, and from a
checkout as ``python tools/<tool>.py`` (thin wrappers). Nothing in the package imports them.
"""
