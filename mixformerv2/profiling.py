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


def interleaved_median_ms(fns: dict[str, Callable[[], object]], device: torch.device, runs: int = 50,
                          warmup: int = 10, block: int = 10) -> dict[str, float]:
    """Median wall time (ms) per call of each function over ``runs`` timed calls.

    The functions take turns in blocks of ``block`` consecutive calls (the first call of each block, after the
    switch, is not timed), so each is measured in steady state, as in a tracking loop, while a change in machine
    load during the measurement affects all of them alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    while min(len(v) for v in times.values()) < runs:
        for name, fn in fns.items():
            fn()
            _sync(device)
            for _ in range(block):
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_benchmark(device: torch.device, size: int = 2048) -> tuple[Callable[[], object], float]:
    """A dense fp32 ``size`` x ``size`` matmul and its FLOP count, to measure the machine's GEMM throughput."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    return (lambda: a @ b), 2.0 * size ** 3


@torch.inference_mode()
def profile_model(cfg: ModelConfig, device: str | torch.device = "cpu", runs: int = 50, batch: int = 1) -> dict:
    """Parameters, FLOPs and median latency of the full forward and of the cached path (one frame against
    cached templates), plus the machine's fp32 matmul GFLOP/s (2048 x 2048, timed in the same interleaved rounds)
    and the fraction of it the cached path achieves."""
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

    matmul, matmul_flops = matmul_benchmark(device)
    fns = {"full": full, "matmul": matmul}
    if cache is not None:
        fns["cached"] = cached
    ms = interleaved_median_ms(fns, device, runs, block=max(1, min(10, runs // 5)))
    result = {
        "model": cfg.name, "device": str(device), "threads": torch.get_num_threads(), "batch": batch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops_full": count_flops(full) / 1e9,
        "ms_full": ms["full"],
        "machine_gflops": matmul_flops / (ms["matmul"] * 1e-3) / 1e9,
    }
    if cache is not None:
        result["gflops_cached"] = count_flops(cached) / 1e9
        result["ms_cached"] = ms["cached"]
        result["speedup_cached"] = result["ms_full"] / result["ms_cached"]
        achieved = result["gflops_cached"] / (result["ms_cached"] * 1e-3)
        result["achieved_gflops_cached"] = achieved
        result["efficiency_cached"] = achieved / result["machine_gflops"]
    return result
