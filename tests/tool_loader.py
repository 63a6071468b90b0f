"""Import a command-line tool as a module, to call its ``main``: ``mixformerv2/commands/<name>.py`` for the tools
that live in the package (``tools/<name>.py`` is then a thin wrapper), else ``tools/<name>.py`` (tools/ is not a
package)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def tool_path(name: str) -> Path:
    """The file that holds the tool's code."""
    packaged = REPO / "mixformerv2" / "commands" / f"{name}.py"
    return packaged if packaged.is_file() else REPO / "tools" / f"{name}.py"


def load_tool(name: str) -> ModuleType:
    """A fresh import of the tool's module."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", tool_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
