"""MixFormerV2 (NeurIPS 2023) re-implemented: fully transformer tracking, fast cached inference, exact evaluation.

The public entry points:

    from mixformerv2 import load_config, build_model, create_model, load_checkpoint, build_tracker
"""
from .config import load_config
from .models import build_model, create_model, load_checkpoint
from .tracking.tracker import build_tracker

__version__ = "0.1.0"
__all__ = ["__version__", "build_model", "build_tracker", "create_model", "load_checkpoint", "load_config"]
