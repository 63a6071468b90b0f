"""Model profiling: parameters, FLOPs (``torch.utils.flop_counter``), latency, and the machine's matmul speed.

FLOPs count one multiply-add as 2 FLOPs. The CPU attention kernel is not in PyTorch's FLOP registry, so its
count (2 matmuls: Q K^T and P V) is registered here.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .config.schema import ModelConfig
from .models import build_model


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions and attention)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, runs: int = 50, warmup: int = 10) -> float:
    """Median wall time of ``fn`` in milliseconds over ``runs`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def machine_gflops(device: torch.device, size: int = 2048, runs: int = 10) -> float:
    """Measured fp32 dense matmul throughput (GFLOP/s) of ``size`` x ``size`` matrices on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    ms = median_ms(lambda: a @ b, device, runs=runs, warmup=3)
    return 2 * size ** 3 / (ms * 1e-3) / 1e9


@torch.inference_mode()
def profile_model(cfg: ModelConfig, device: str | torch.device = "cpu", runs: int = 50, batch: int = 1) -> dict:
    """Parameters, FLOPs and median latency of the full forward and of the cached path (one frame against
    cached templates), plus the machine's matmul GFLOP/s and the fraction of it the cached path achieves."""
    device = torch.device(device)
    model = build_model(cfg).eval().to(device)
    t, s = cfg.template_size, cfg.search_size
    template = torch.randn(batch, 3, t, t, device=device)
    online = torch.randn(batch, 3, t, t, device=device)
    search = torch.randn(batch, 3, s, s, device=device)
    cache = model.encode_templates(template, online) if hasattr(model, "encode_templates") else None

    def full():
        return model(template, online, search)

    def cached():
        return model.forward_search(cache, search)

    result = {
        "model": cfg.name, "device": str(device), "threads": torch.get_num_threads(), "batch": batch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops_full": count_flops(full) / 1e9,
        "ms_full": median_ms(full, device, runs),
    }
    if cache is not None:
        result["gflops_cached"] = count_flops(cached) / 1e9
        result["ms_cached"] = median_ms(cached, device, runs)
        result["speedup_cached"] = result["ms_full"] / result["ms_cached"]
    result["machine_gflops"] = machine_gflops(device)
    if cache is not None:
        achieved = result["gflops_cached"] / (result["ms_cached"] * 1e-3)
        result["achieved_gflops_cached"] = achieved
        result["efficiency_cached"] = achieved / result["machine_gflops"]
    return result
