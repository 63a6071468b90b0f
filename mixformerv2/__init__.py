"""MixFormerV2 (NeurIPS 2023) re-implemented: fully transformer tracking, fast cached inference, exact evaluation.

The public entry points:

    from mixformerv2 import load_config, build_model, create_model, load_checkpoint, build_tracker

They are resolved on first access (PEP 562), so ``import mixformerv2.evaluation`` or ``mixformerv2.data`` loads
neither torch models nor the tracker.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_config": "mixformerv2.config",
    "build_model": "mixformerv2.models",
    "create_model": "mixformerv2.models",
    "load_checkpoint": "mixformerv2.models",
    "build_tracker": "mixformerv2.tracking.tracker",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from .config import load_config
    from .models import build_model, create_model, load_checkpoint
    from .tracking.tracker import build_tracker


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
