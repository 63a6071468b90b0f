"""Torch device selection: the default of every ``--device`` flag, and a check that a requested device exists."""
from __future__ import annotations

import os

import torch

from .errors import UserError


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"`` (the default of every ``--device`` flag)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``; None: ``default_device()``) -> ``torch.device``.

    Raises ``UserError`` (one line naming ``--device``) when the string is not a device or the device is not
    usable on this machine, so that a run fails at start rather than when the model is first moved.
    """
    if name is None or name == "":
        return torch.device(default_device())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"--device {name!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}, "
                            f"built for CUDA {torch.version.cuda}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: Apple MPS is not available on this machine; use --device cpu")
    return device


def worker_devices(device: str | torch.device, workers: int, cuda_count: int | None = None) -> list[torch.device]:
    """The device of each of ``workers`` tracker processes (at least one).

    ``cuda`` without an index spreads the workers round robin over the visible GPUs: worker k (0-based) runs on
    ``cuda:(k mod G)``, as pytracking's ``--num_gpus`` does, so ``--device cuda --workers 16`` on an 8-GPU node puts
    two workers on each (``CUDA_VISIBLE_DEVICES`` chooses which GPUs are visible). ``cuda:N``, ``cpu`` and ``mps``
    put every worker on that one device. ``cuda_count``: the number of visible GPUs (default
    ``torch.cuda.device_count()``; tests pass a fake count).
    """
    device = torch.device(device)
    count = max(1, workers)
    if device.type != "cuda" or device.index is not None:
        return [device] * count
    gpus = torch.cuda.device_count() if cuda_count is None else cuda_count
    if gpus < 1:
        raise UserError("--device cuda: no CUDA device is visible (CUDA_VISIBLE_DEVICES?); use --device cpu")
    return [torch.device("cuda", k % gpus) for k in range(count)]
