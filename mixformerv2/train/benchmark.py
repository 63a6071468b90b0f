"""Training throughput: samples/s and where one iteration's time goes (data wait, forward, backward, optimizer).

Runs a ``Trainer``'s own pieces (its stage, loader, AMP, optimizer step) without logging or checkpoints, and
synchronises the device between phases so that each phase's time is its own (which makes the total a little
slower than the overlapped loop of ``Trainer.fit``).
"""
from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch

from ..config import ConfigError
from ..utils.device import available_cpus
from ..utils.timing import sync_device
from .trainer import Trainer, batch_size_of


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """What the CPU offers the matmul kernels, from the first ``flags`` line of ``cpuinfo`` (Linux): ``model``
    (the ``model name``), ``avx2``, ``avx512f``, ``avx512_bf16`` and ``amx`` (any ``amx_*`` flag, e.g. amx_bf16)
    as booleans; each None where the file cannot be read (other systems)."""
    keys = ("avx2", "avx512f", "avx512_bf16", "amx")
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return {"model": None, **dict.fromkeys(keys)}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    found = {key: key in flags for key in keys[:3]}
    found["amx"] = any(flag.startswith("amx") for flag in flags)
    return {"model": fields.get("model name"), **found}


def thread_counts() -> dict:
    """torch's intra-op and inter-op threads of this process and the logical CPUs it may run on."""
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
            "logical_cpus": available_cpus()}


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process in MiB: allocated CUDA memory on a GPU (since ``benchmark_training`` reset it),
    the peak resident set size of the whole process on the CPU (Linux ``ru_maxrss``; it cannot be reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def benchmark_training(trainer: Trainer, steps: int = 20, warmup: int = 3) -> dict:
    """Time ``steps`` iterations (``train.batch_size_per_process`` samples each, no accumulation) after ``warmup``
    untimed ones from the start of epoch 0. Returns ``samples_per_s``, the median ``*_ms`` of ``data_wait``,
    ``forward``, ``backward``, ``optimizer`` and ``step`` (their sum), ``data_wait_fraction`` (total wait / total
    time), ``peak_memory_mib``, ``cpu`` (``cpu_features``), ``threads`` (``thread_counts``) and the settings. The
    weights change: use a throw-away trainer."""
    device, stage = trainer.device, trainer.stage
    if len(trainer.train_loader) < warmup + steps:
        raise ConfigError(f"data.samples_per_epoch: the loader has {len(trainer.train_loader)} batches per epoch, "
                         f"fewer than warm-up {warmup} + steps {steps}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stage.train()
    trainer.train_loader.set_epoch(0)
    batches = iter(trainer.train_loader)
    phases: dict[str, list[float]] = {"data_wait": [], "forward": [], "backward": [], "optimizer": []}
    samples = 0
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        batch = trainer.to_device(next(batches))
        sync_device(device)
        marks.append(time.perf_counter())
        with trainer.autocast():
            loss, _ = stage.loss(batch, i)
        sync_device(device)
        marks.append(time.perf_counter())
        trainer.scaler.scale(loss).backward()
        sync_device(device)
        marks.append(time.perf_counter())
        trainer.optimizer_step(bad_loss=not torch.isfinite(loss.detach()).item())
        sync_device(device)
        marks.append(time.perf_counter())
        if i >= warmup:
            samples += batch_size_of(batch)
            for name, start, end in zip(phases, marks, marks[1:]):
                phases[name].append(end - start)
    del batches
    total_s = sum(sum(times) for times in phases.values())
    result = {f"{name}_ms": 1000 * statistics.median(times) for name, times in phases.items()}
    result["step_ms"] = sum(result[f"{name}_ms"] for name in phases)
    result.update(samples_per_s=samples / total_s, data_wait_fraction=sum(phases["data_wait"]) / total_s,
                  peak_memory_mib=peak_memory_mib(device), steps=steps, warmup=warmup,
                  batch_size_per_process=trainer.cfg.train.batch_size_per_process, device=str(device),
                  amp=trainer.cfg.train.amp_dtype if trainer.cfg.train.amp else "off",
                  num_workers=getattr(trainer.train_loader, "num_workers", None), cpu=cpu_features(),
                  threads=thread_counts())
    return result
