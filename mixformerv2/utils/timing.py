"""Wall-clock timing of functions that take turns (interleaved), so that load changes hit all of them alike."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from tqdm import tqdm


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times_ms(fns: dict[str, Callable[[], object]], device: torch.device, runs: int = 50,
                         warmup: int = 10, block: int = 10, progress: bool = False) -> dict[str, list[float]]:
    """Wall times (ms) of at least ``runs`` calls of each function.

    The functions take turns in blocks of ``block`` consecutive calls (the first call of each block, after the
    switch, is not timed), so each is measured in steady state, as in a tracking loop, while a change in machine
    load during the measurement affects all of them alike. ``progress``: a progress bar over the calls (warm-up
    included), on stderr.
    """
    rounds = -(-runs // block)
    bar = tqdm(total=len(fns) * (warmup + rounds * (block + 1)), desc="timing", unit="call", disable=not progress,
               leave=False)
    with bar:
        for fn in fns.values():
            for _ in range(warmup):
                fn()
                bar.update(1)
        sync_device(device)
        times: dict[str, list[float]] = {name: [] for name in fns}
        while min(len(v) for v in times.values()) < runs:
            for name, fn in fns.items():
                bar.set_postfix_str(name)
                fn()
                sync_device(device)
                for _ in range(block):
                    start = time.perf_counter()
                    fn()
                    sync_device(device)
                    times[name].append((time.perf_counter() - start) * 1e3)
                bar.update(block + 1)
    return times


def interleaved_median_ms(fns: dict[str, Callable[[], object]], device: torch.device, runs: int = 50,
                          warmup: int = 10, block: int = 10, progress: bool = False) -> dict[str, float]:
    """Median of ``interleaved_times_ms`` per function (ms per call)."""
    return {name: statistics.median(values)
            for name, values in interleaved_times_ms(fns, device, runs, warmup, block, progress).items()}
