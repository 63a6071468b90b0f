"""Full training state on disk: atomic writes, keep-last-k, ``--resume auto|PATH|none``, RNG states.

A training-state file ``checkpoints/step_00001234.pt`` holds only tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: the stage's state, the optimizer, the GradScaler, the position
(epoch, iteration, batch inside the epoch), the RNG states of every rank (python, numpy, torch CPU and CUDA), the
resolved config as a dict and the code version (``utils.version.code_version()``). The model-only file of a
finished stage is written separately by ``models.checkpoint.save_checkpoint`` in the official ``{'net':
state_dict}`` layout.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..models.checkpoint import CheckpointError, read_checkpoint
from ..utils.io import atomic_open

logger = logging.getLogger(__name__)

STATE_FORMAT = "mixformerv2-train-state/1"
_NAME = re.compile(r"^step_(\d+)\.pt$")
# Keys that may change between a run and its resume: none of them changes which samples are drawn or the weights
# (CPU threads change only the order of floating-point sums).
RESUME_FREE_KEYS = ("data.num_workers", "data.roots", "train.print_interval", "train.keep_last",
                    "train.checkpoint_interval", "train.val_interval", "train.cpu_threads", "test")


class ResumeError(RuntimeError):
    """A checkpoint that cannot be resumed from; the message names the file and, for a config clash, the key."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Training-state files of ``directory``, oldest (lowest iteration) first; temporary files are ignored."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_state(state: Mapping[str, Any], path: str | Path) -> None:
    """Serialise ``state`` and write it atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    with atomic_open(path) as f:
        torch.save(dict(state), f)


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training-state file (``models.checkpoint.read_checkpoint``: ``weights_only=True``, onto the CPU);
    raises ``ResumeError`` naming the file."""
    try:
        state = read_checkpoint(path)
    except CheckpointError as err:
        raise ResumeError(str(err)) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ResumeError(f"{path}: not a training state of this trainer (no format {STATE_FORMAT!r}); a "
                          f"model-only file ('net') is loaded with train.init_checkpoint instead")
    return state


class CheckpointManager:
    """Writes training states into ``directory`` (rank 0 only) and keeps the ``keep_last`` newest."""

    def __init__(self, directory: str | Path, keep_last: int, is_main: bool = True):
        if keep_last < 1:
            raise ValueError(f"train.keep_last: must be >= 1, got {keep_last}")
        self.directory, self.keep_last, self.is_main = Path(directory), keep_last, is_main

    def save(self, state: Mapping[str, Any], step: int) -> Path | None:
        """Write ``state`` as iteration ``step``'s file, then delete all but the newest ``keep_last``."""
        if not self.is_main:
            return None
        path = self.directory / checkpoint_name(step)
        save_state(state, path)
        for old in list_checkpoints(self.directory)[:-self.keep_last]:
            old.unlink(missing_ok=True)
        logger.debug("saved %s", path)
        return path

    def latest(self) -> Path | None:
        found = list_checkpoints(self.directory)
        return found[-1] if found else None

    def resolve(self, resume: str) -> Path | None:
        """The file ``--resume`` asks for: ``auto`` the newest here (None when there is none), ``none`` nothing
        (refused when this folder already holds checkpoints, which a fresh run would mix with), else a path."""
        if resume == "auto":
            return self.latest()
        if resume == "none":
            if self.latest() is not None:
                raise ResumeError(f"{self.directory}: holds checkpoints of an earlier run; resume it with "
                                  f"--resume auto, or choose another --output")
            return None
        return Path(resume)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (lists and other leaves are kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       free: tuple[str, ...] = RESUME_FREE_KEYS) -> list[str]:
    """Dotted keys whose values differ between two config dicts, as ``key (checkpoint A, this run B)``; keys
    under ``free`` are ignored."""
    a, b = flatten(saved), flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if any(key == f or key.startswith(f + ".") for f in free):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            out.append(f"{key} (checkpoint {a.get(key, '<absent>')!r}, this run {b.get(key, '<absent>')!r})")
    return out


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors, numbers and lists (python, numpy legacy global, torch CPU, CUDA)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe_version(version: Mapping[str, Any] | str) -> str:
    """``utils.version.code_version()``'s dict as text: ``0.1.0+g1a2b3c4d5e6f.dirty``, ``0.1.0`` without git."""
    if isinstance(version, str):
        return version
    text = str(version.get("package") or "unknown version")
    if version.get("git_commit"):
        text += f"+g{version['git_commit'][:12]}{'.dirty' if version.get('git_dirty') else ''}"
    return text
