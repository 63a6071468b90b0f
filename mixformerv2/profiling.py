"""Model profiling: parameters, FLOPs (``torch.utils.flop_counter``), latency, and the machine's matmul speed.

FLOPs count one multiply-add as 2 FLOPs; GMACs (multiply-accumulates, what the tracking papers call "FLOPs": the
paper's MixFormerV2-B "~28 GFLOPs" is 56.3 GFLOPs here) are reported beside them, labelled, as GFLOPs / 2. The CPU attention kernel is not in PyTorch's FLOP registry, so its
count (2 matmuls: Q K^T and P V) is registered here. ``speed_table`` compares the backends
(``mixformerv2.export.backends``) for several models; see its docstring.
"""
from __future__ import annotations

import statistics
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .config.schema import ModelConfig
from .models import build_model
from .utils.timing import interleaved_median_ms, interleaved_times_ms


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def gmacs(gflops: float) -> float:
    """GFLOPs -> GMACs (one multiply-accumulate = 2 FLOPs)."""
    return gflops / 2.0


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions and attention)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def matmul_benchmark(device: torch.device, size: int = 2048,
                     dtype: torch.dtype = torch.float32) -> tuple[Callable[[], object], float]:
    """A dense ``size`` x ``size`` matmul in ``dtype`` and its FLOP count, to measure the machine's GEMM
    throughput."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return (lambda: a @ b), 2.0 * size ** 3


#: The units of ``profile_model``'s numbers, written into its JSON.
PROFILE_UNITS = {
    "params_m": "millions of parameters",
    "gflops_*": "1e9 floating-point operations per call, one multiply-add = 2",
    "gmacs_*": "1e9 multiply-accumulates per call (= GFLOPs / 2; what tracking papers call FLOPs)",
    "ms_*": "milliseconds per call, median",
    "machine_gflops, achieved_gflops_*": "GFLOP/s",
    "efficiency_cached, speedup_cached": "ratio",
}


@torch.inference_mode()
def profile_model(cfg: ModelConfig, device: str | torch.device = "cpu", runs: int = 50, batch: int = 1,
                  progress: bool = False) -> dict:
    """Parameters, FLOPs (and GMACs) and median latency (ms) of the full forward and of the cached path (one frame
    against cached templates), plus the machine's fp32 matmul GFLOP/s (2048 x 2048, timed in the same interleaved
    rounds) and the fraction of it the cached path achieves. ``progress``: a progress bar while timing."""
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
    ms = interleaved_median_ms(fns, device, runs, block=max(1, min(10, runs // 5)), progress=progress)
    result = {
        "model": cfg.name, "device": str(device), "threads": torch.get_num_threads(), "batch": batch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops_full": count_flops(full) / 1e9,
        "ms_full": ms["full"],
        "machine_gflops": matmul_flops / (ms["matmul"] * 1e-3) / 1e9,
        "units": PROFILE_UNITS,
    }
    result["gmacs_full"] = gmacs(result["gflops_full"])
    if cache is not None:
        result["gflops_cached"] = count_flops(cached) / 1e9
        result["gmacs_cached"] = gmacs(result["gflops_cached"])
        result["ms_cached"] = ms["cached"]
        result["speedup_cached"] = result["ms_full"] / result["ms_cached"]
        achieved = result["gflops_cached"] / (result["ms_cached"] * 1e-3)
        result["achieved_gflops_cached"] = achieved
        result["efficiency_cached"] = achieved / result["machine_gflops"]
    return result


# ------------------------------------------------------------------------------------------------ speed table
# table row -> (backend, precision, cached path, torch.compile)
SPEED_VARIANTS = {
    "torch_fp32_full": ("torch", "fp32", False, False),
    "torch_fp32_cached": ("torch", "fp32", True, False),
    "torch_bf16": ("torch", "bf16", True, False),
    "torch_int8": ("torch", "int8", True, False),
    "onnxruntime_fp32": ("onnxruntime", "fp32", True, False),
    "onnxruntime_int8": ("onnxruntime", "int8", True, False),
    "openvino_fp32": ("openvino", "fp32", True, False),
    "openvino_bf16": ("openvino", "bf16", True, False),
    "openvino_int8": ("openvino", "int8", True, False),
}
CUDA_SPEED_VARIANTS = {  # the per-frame step at batch 1 on a GPU, compiled with CUDA graphs ("reduce-overhead")
    "torch_fp32_full": ("torch", "fp32", False, False),
    "torch_fp32_cached": ("torch", "fp32", True, False),
    "torch_fp16": ("torch", "fp16", True, False),
    "torch_bf16": ("torch", "bf16", True, False),
    "torch_fp16_compiled": ("torch", "fp16", True, True),
}
BASELINE = "torch_fp32_full"  # what the official tracker computes every frame
PAPER_GPU_FPS = {"B": 165.0}  # the paper's GPU speed (hardware unstated; probably an RTX 8000)


def machine_info() -> dict:
    """CPU model and flags, logical CPUs, torch threads, load average, Python and library versions."""
    import importlib
    import os
    import platform

    from .export.cpu import cpu_info
    from .export.optional import is_installed
    from .utils.device import available_cpus

    cpu = cpu_info()
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for module in ("onnxruntime", "openvino"):
        versions[module] = importlib.import_module(module).__version__ if is_installed(module) else None
    return {"cpu": cpu.model, "flags": list(cpu.flags), "native_bf16": cpu.native_bf16,
            "logical_cpus": available_cpus(), "threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "versions": versions}


def _test_scene(seed: int) -> tuple[np.ndarray, list[float]]:
    """A (480, 640, 3) uint8 noise frame and a target box in it: what the tracker step is timed on."""
    frame = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return frame, [280.0, 200.0, 80.0, 60.0]


def _tracker_step(tracker, frame: np.ndarray, box_xywh: list[float]):
    """One ``track`` call from ``box_xywh``: the state is reset first, so that every variant crops the same region
    (with random weights the box would wander, and the crop's cost with it)."""
    tracker.state_xywh = list(box_xywh)
    return tracker.track(frame)


def _model_variants(cfg: ModelConfig, variants: dict, cpu, device: torch.device, export_dir: str, seed: int):
    """(network and tracker-step functions per variant, skipped variant -> reason, GFLOPs full / cached)."""
    from .config.schema import TestConfig
    from .export.backends import build_backend, unavailable_reason
    from .export.onnx import example_inputs, export_onnx
    from .tracking.tracker import MixFormerV2Tracker

    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    x = {k: v.to(device) for k, v in example_inputs(cfg, seed).items()}
    frame, box = _test_scene(seed)
    fns, skipped, exported = {}, {}, False
    for name, (backend, precision, cached, compile_step) in variants.items():
        reason = unavailable_reason(backend, precision, device, cpu)
        if reason:
            skipped[name] = reason
            continue
        if backend != "torch" and not exported:
            export_onnx(model.cpu(), cfg, export_dir)
            exported = True
        runtime = build_backend(model, cfg, backend, precision, device, cached, cpu=cpu, compile_step=compile_step,
                                export_dir=export_dir if backend != "torch" else None)
        if cached:
            cache = runtime.encode_templates(x["template"], x["online_template"])
            fns[name] = lambda r=runtime, c=cache: r.forward_search(c, x["search"])
        else:
            fns[name] = lambda r=runtime: r.forward_full(x["template"], x["online_template"], x["search"])
        tracker = MixFormerV2Tracker(runtime, TestConfig(), cfg.template_size, cfg.search_size, device,
                                     image_mean=cfg.image_mean, image_std=cfg.image_std)
        tracker.initialize(frame, box)
        fns[f"{name}/tracker"] = lambda t=tracker: _tracker_step(t, frame, box)
    model, x = model.to(device), {k: v.to(device) for k, v in x.items()}
    with torch.inference_mode():
        gflops_full = count_flops(lambda: model(x["template"], x["online_template"], x["search"])) / 1e9
        cache = model.encode_templates(x["template"], x["online_template"])
        gflops_cached = count_flops(lambda: model.forward_search(cache, x["search"])) / 1e9
    return fns, skipped, gflops_full, gflops_cached


@torch.inference_mode()
def speed_table(models: dict[str, ModelConfig], variants: Sequence[str] | None = None,
                device: torch.device | str = "cpu", runs: int = 30, warmup: int = 3, block: int = 5,
                seed: int = 0, progress: bool = False) -> dict:
    """Per frame on this CPU (or GPU), for every model (random weights) and every variant of ``SPEED_VARIANTS``
    (``CUDA_SPEED_VARIANTS`` on a GPU; ``variants`` names a subset) that can run here: the network alone (one ``forward_search`` against cached templates, or the full forward for
    ``torch_fp32_full``) and the whole tracker step (crop, normalise, network, post-process: ``track``), each
    p50/p95 in ms from interleaved rounds (``interleaved_times_ms``: every variant and the matmul peaks take turns,
    so load changes hit all alike), FPS of the tracker step, speed-up against ``torch_fp32_full``, GFLOPs and the
    achieved GFLOP/s against the fp32 and bf16 matmul peaks measured in the same rounds.

    ``auto`` of a model is what ``--backend auto`` picks (``export.backends.choose_auto``): the fastest of its
    candidates by the network p50 measured here.

    Returns ``{"machine": machine_info(), "models": {name: {"peak_gflops": {"fp32", "bf16"}, "gflops": {"full",
    "cached"}, "gmacs": {"full", "cached"}, "skipped": {variant: reason}, "auto": {"backend", "precision", "reason",
    "variant"}, "backends": {variant: row}}}}``, a row being
    ``{"backend", "precision", "path", "ms_p50", "ms_p95", "tracker_ms_p50", "tracker_ms_p95", "fps",
    "speedup_vs_full", "tracker_speedup_vs_full", "gflops", "achieved_gflops", "of_fp32_peak", "of_bf16_peak"}``.
    """
    import tempfile

    from .export.backends import auto_candidates, choose_auto
    from .export.cpu import cpu_info

    cpu, device = cpu_info(), torch.device(device)
    table = CUDA_SPEED_VARIANTS if device.type == "cuda" else SPEED_VARIANTS
    unknown = sorted(set(variants or ()) - set(table))
    if unknown:
        raise ValueError(f"variants {unknown} are not measured on {device.type} (known: {', '.join(table)})")
    chosen = {name: spec for name, spec in table.items() if variants is None or name in variants}
    auto_variants = {(spec[0], spec[1]): n for n, spec in chosen.items() if spec[2:] == (True, False)}
    candidates = auto_candidates(cpu, device)
    machine = machine_info()
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    result = {"machine": machine, "device": str(device),
              "settings": {"runs": runs, "warmup": warmup, "block": block},
              "models": {}}
    for model_name, cfg in models.items():
        with tempfile.TemporaryDirectory(prefix="mixformerv2_speed_") as tmp:
            fns, skipped, gflops_full, gflops_cached = _model_variants(cfg, chosen, cpu, device, tmp, seed)
            peaks = {"fp32": matmul_benchmark(device)}
            if cpu.native_bf16 or device.type == "cuda":
                peaks["bf16"] = matmul_benchmark(device, dtype=torch.bfloat16)
            times = interleaved_times_ms({**fns, **{f"matmul/{k}": fn for k, (fn, _) in peaks.items()}}, device,
                                         runs, warmup, block, progress)
        peak = {k: flops / (statistics.median(times[f"matmul/{k}"]) * 1e-3) / 1e9 for k, (_, flops) in peaks.items()}
        rows = _rows(times, {n: spec for n, spec in chosen.items() if n in fns}, gflops_full, gflops_cached, peak)
        measured = {c: rows[auto_variants[c]]["ms_p50"] for c in candidates if auto_variants.get(c) in rows}
        backend, precision, reason = choose_auto(
            cpu, device, times_ms=measured if len(measured) == len(candidates) else None)
        result["models"][model_name] = {
            "config": cfg.name, "peak_gflops": {"fp32": peak["fp32"], "bf16": peak.get("bf16")},
            "gflops": {"full": gflops_full, "cached": gflops_cached},
            "gmacs": {"full": gmacs(gflops_full), "cached": gmacs(gflops_cached)}, "skipped": skipped,
            "auto": {"backend": backend, "precision": precision, "reason": reason,
                     "variant": auto_variants.get((backend, precision))},
            "backends": rows}
        if device.type == "cuda" and model_name in PAPER_GPU_FPS:
            result["models"][model_name]["paper_gpu_fps"] = PAPER_GPU_FPS[model_name]
    result["machine"]["load_average_end"] = machine_info()["load_average"]
    return result


def _rows(times: dict[str, list[float]], variants: dict[str, tuple], gflops_full: float, gflops_cached: float,
          peak: dict[str, float]) -> dict[str, dict]:
    """Table rows of the ``variants`` (name -> (backend, precision, cached, compile)) from their times (ms)."""
    rows = {}
    for name, (backend, precision, cached, compile_step) in variants.items():
        ms50, ms95 = np.percentile(times[name], [50, 95])
        t50, t95 = np.percentile(times[f"{name}/tracker"], [50, 95])
        gflops = gflops_cached if cached else gflops_full
        achieved = gflops / (ms50 * 1e-3)
        rows[name] = {"backend": backend, "precision": precision, "path": "cached" if cached else "full",
                      "compiled": compile_step,
                      "ms_p50": float(ms50), "ms_p95": float(ms95), "tracker_ms_p50": float(t50),
                      "tracker_ms_p95": float(t95), "fps": float(1e3 / t50), "gflops": gflops,
                      "achieved_gflops": float(achieved), "of_fp32_peak": float(achieved / peak["fp32"]),
                      "of_bf16_peak": float(achieved / peak["bf16"]) if "bf16" in peak else None}
    if BASELINE in rows:
        for row in rows.values():
            row["speedup_vs_full"] = rows[BASELINE]["ms_p50"] / row["ms_p50"]
            row["tracker_speedup_vs_full"] = rows[BASELINE]["tracker_ms_p50"] / row["tracker_ms_p50"]
    return rows


def speed_markdown(result: dict, command: str | None = None) -> str:
    """``speed_table``'s result as Markdown: the machine, then one table per model."""
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    loads = [", ".join(f"{when} {'/'.join(f'{v:.1f}' for v in machine[key])}" for when, key in
                       (("start", "load_average"), ("end", "load_average_end")) if machine.get(key))]
    lines = [f"CPU: {machine['cpu']} ({', '.join(machine['flags']) or 'no AVX2'}); {machine['threads']} thread(s) "
             f"of {machine['logical_cpus']} logical CPUs; load average (1/5/15 min) {loads[0] or 'n/a'}",
             f"Versions: {versions}"]
    if command:
        lines.insert(0, f"Command: `{command}`")
    if machine.get("gpu"):
        lines.insert(1, f"GPU: {machine['gpu']} (device {result['device']})")
    for name, entry in result["models"].items():
        peaks = entry["peak_gflops"]
        lines += ["", f"**MixFormerV2-{name}**: {entry['gflops']['full']:.1f} GFLOPs = "
                      f"{gmacs(entry['gflops']['full']):.1f} GMACs (the papers' \"FLOPs\") full forward, "
                      f"{entry['gflops']['cached']:.1f} GFLOPs = {gmacs(entry['gflops']['cached']):.1f} GMACs "
                      f"cached; matmul peak {peaks['fp32']:.0f} GFLOP/s fp32"
                      + (f", {peaks['bf16']:.0f} bf16" if peaks.get("bf16") else ""),
                  f"auto: {entry['auto']['backend']} {entry['auto']['precision']} ({entry['auto']['reason']})", "",
                  "| backend | precision | path | network ms p50 / p95 | tracker step ms p50 / p95 | FPS | "
                  "× vs fp32 full (network / step) | GFLOP/s | % of fp32 / bf16 peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for variant, row in entry["backends"].items():
            mark = " (auto)" if variant == entry["auto"]["variant"] else ""
            bf16 = f"{100 * row['of_bf16_peak']:.0f}" if row["of_bf16_peak"] is not None else "-"
            path = row["path"] + (", compiled" if row.get("compiled") else "")
            lines.append(f"| {row['backend']}{mark} | {row['precision']} | {path} | "
                         f"{row['ms_p50']:.1f} / {row['ms_p95']:.1f} | {row['tracker_ms_p50']:.1f} / "
                         f"{row['tracker_ms_p95']:.1f} | {row['fps']:.1f} | {row.get('speedup_vs_full', 0):.2f} / "
                         f"{row.get('tracker_speedup_vs_full', 0):.2f} | {row['achieved_gflops']:.0f} | "
                         f"{100 * row['of_fp32_peak']:.0f} / {bf16} |")
        if entry.get("paper_gpu_fps"):
            lines.append(f"\nThe paper: {entry['paper_gpu_fps']:.0f} FPS on a GPU (hardware not stated).")
        for variant, why in entry["skipped"].items():
            lines.append(f"\n{variant} not measured: {why}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ trained trackers
@torch.inference_mode()
def profile_trackers(models: dict, dataset: str | None = None, runs: int = 30, warmup: int = 3, block: int = 5,
                     threads: int | None = None, seed: int = 0) -> dict:
    """Size, per-frame FLOPs and CPU speed of trackers as they track (weights loaded, default backend and path).

    models: ``{name: (Config, checkpoint path or None)}``; each becomes ``build_tracker(cfg, checkpoint, "cpu",
    dataset)`` (``dataset`` picks the ``test.datasets`` settings). threads: torch threads during the measurement
    (default: as set; restored after).

    Per model: ``params_m`` (millions), ``gflops_per_frame`` / ``gmacs_per_frame`` (the network call the tracker
    makes each frame: ``forward_search`` against cached templates where the model has it, else the full forward;
    one multiply-add = 2 FLOPs = 1 MAC), ``ms_per_frame`` / ``ms_per_frame_p95`` (median / p95 of at least ``runs``
    whole tracker steps: crop, normalise, network, box, online update; from a fixed box on a 640x480 frame,
    interleaved across the models so load changes hit all alike) and ``forward_path``. Also ``machine``
    (``machine_info``) and ``settings`` (threads, runs, frame size).
    """
    from .tracking.tracker import build_tracker

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        frame, box = _test_scene(seed)
        entries, fns = {}, {}
        for name, (cfg, checkpoint) in models.items():
            torch.manual_seed(seed)
            tracker = build_tracker(cfg, checkpoint, "cpu", dataset)
            tracker.initialize(frame, box)
            entries[name] = {"params_m": sum(p.numel() for p in tracker.model.parameters()) / 1e6,
                             "gflops_per_frame": _step_flops(tracker.model, cfg.model, tracker.cached) / 1e9,
                             "forward_path": tracker.forward_path}
            entries[name]["gmacs_per_frame"] = entries[name]["gflops_per_frame"] / 2
            fns[name] = lambda t=tracker: _tracker_step(t, frame, box)
        times = interleaved_times_ms(fns, torch.device("cpu"), runs, warmup, block) if fns else {}
        for name, values in times.items():
            ms50, ms95 = np.percentile(values, [50, 95])
            entries[name].update(ms_per_frame=float(ms50), ms_per_frame_p95=float(ms95))
        return {"machine": machine_info(), "models": entries,
                "settings": {"device": "cpu", "threads": torch.get_num_threads(), "runs": runs,
                             "frame_wh": [frame.shape[1], frame.shape[0]], "dataset": dataset}}
    finally:
        torch.set_num_threads(previous)


def _step_flops(model: torch.nn.Module, cfg: ModelConfig, cached: bool) -> int:
    """FLOPs of the network call a tracker makes per frame (batch 1, random inputs of the config's sizes)."""
    t, s = cfg.template_size, cfg.search_size
    template, online, search = torch.randn(1, 3, t, t), torch.randn(1, 3, t, t), torch.randn(1, 3, s, s)
    if cached:
        cache = model.encode_templates(template, online)
        return count_flops(lambda: model.forward_search(cache, search))
    return count_flops(lambda: model(template, online, search))
