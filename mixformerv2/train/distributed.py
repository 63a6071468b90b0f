"""torchrun support: process-group setup, rank helpers and reductions; all no-ops in a single process.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is one process. The backend is
nccl on CUDA and gloo on CPU. Several nodes need no code change, only torchrun's rendezvous flags, e.g. on each of
two nodes: ``torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500
tools/train.py --config C``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as torch_dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` in ``[0, world_size)``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints, writes checkpoints, logs and TensorBoard events."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a single process without it."""
    if "RANK" not in os.environ:
        return DistInfo()
    try:
        return DistInfo(int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1")),
                        int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as err:
        raise ValueError(f"torchrun environment: RANK/WORLD_SIZE/LOCAL_RANK must be integers ({err})") from None


def init_distributed(device: str | torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (nccl for CUDA, gloo for CPU) and pick this rank's device
    (``cuda:LOCAL_RANK`` when ``device`` is CUDA). A single process gets ``device`` back unchanged."""
    info = env_dist_info()
    device = torch.device(device)
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    logger.info("rank %d of %d (local rank %d) on %s", info.rank, info.world_size, info.local_rank, device)
    return info, device


def cleanup_distributed() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` (which broadcasts rank 0's weights to every rank)."""
    if not info.enabled:
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def _reduce(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        torch_dist.all_reduce(values, op=torch_dist.ReduceOp.SUM)
    return values


def reduce_sum(values: Mapping[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Per-key sums over all ranks; every rank must pass the same keys (checked: a mismatch would hang)."""
    keys = sorted(values)
    if info.enabled:
        gathered: list = [None] * info.world_size
        torch_dist.all_gather_object(gathered, keys)
        if any(k != keys for k in gathered):
            raise RuntimeError(f"rank {info.rank}: ranks reduce different metric keys: {gathered}")
    if not keys:
        return {}
    buffer = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    return dict(zip(keys, _reduce(buffer, info).tolist()))


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on some rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    return bool(_reduce(torch.tensor([float(flag)], device=device), info).item() > 0)


def gather_objects(obj, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (pickled: for small, rare payloads only)."""
    if not info.enabled:
        return [obj]
    gathered: list = [None] * info.world_size
    torch_dist.all_gather_object(gathered, obj)
    return gathered
