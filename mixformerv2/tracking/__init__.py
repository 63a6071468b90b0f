"""The online tracker and the benchmark runner."""
from .tracker import MixFormerV2Tracker, TrackOutput, build_tracker

__all__ = ["MixFormerV2Tracker", "TrackOutput", "build_tracker"]
