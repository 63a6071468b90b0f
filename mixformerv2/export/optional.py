"""Optional dependencies of the export and runtime backends: imported on first use, a missing one is one line."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..utils.errors import UserError

# module -> (what it is for, the pip extra that installs it)
EXTRAS = {
    "onnx": ("ONNX export", "export"),
    "onnxruntime": ("the onnxruntime backend and ONNX parity checks", "export"),
    "openvino": ("the openvino backend", "openvino"),
}


class MissingBackendError(UserError):
    """An optional library that a backend or the export needs is not installed; the message names the extra."""


def import_optional(module: str) -> ModuleType:
    """Import ``module`` (a key of ``EXTRAS``) or raise ``MissingBackendError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        purpose, extra = EXTRAS[module]
        raise MissingBackendError(f"{module} is not installed; {purpose} needs it: pip install "
                                  f"'mixformerv2[{extra}]' (or pip install {module})") from err


def is_installed(module: str) -> bool:
    """True when ``module`` can be imported (it is imported to find out)."""
    try:
        import_optional(module)
    except MissingBackendError:
        return False
    return True
