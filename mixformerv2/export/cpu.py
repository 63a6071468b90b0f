"""What the CPU can do fast: its model name and the instruction-set flags that decide the backend and precision.

bf16 is native with AVX-512_BF16 (``avx512_bf16``) or AMX (``amx_bf16``/``amx_tile``); without them PyTorch
emulates it and is slower than fp32 (the cached path of MixFormerV2 measured 401 ms in bf16 against 64 ms in fp32
on an AVX2-only CPU). int8 matrix products are fastest with VNNI (``avx512_vnni``/``avx_vnni``) or AMX
(``amx_int8``).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# the flags reported beside every speed figure
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    """model: the CPU's name; flags: the ``REPORTED_FLAGS`` it has (empty where they cannot be read)."""

    model: str
    flags: tuple[str, ...]

    @property
    def native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16", "amx_tile"} & set(self.flags))

    @property
    def fast_int8(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.flags))

    def describe(self) -> str:
        """``"<model> (avx2, avx512f, ...)"``: the line printed beside speed figures."""
        return f"{self.model} ({', '.join(self.flags) or 'no AVX2'})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """CpuInfo from the text of Linux's ``/proc/cpuinfo`` (the first processor's ``model name`` and ``flags``)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuInfo(model or platform.processor() or "unknown CPU", tuple(f for f in REPORTED_FLAGS if f in flags))


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CpuInfo (Linux); elsewhere the flags come from PyTorch's detected capability (AVX2 or
    AVX-512, without bf16 or VNNI, which it does not report)."""
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        flags = {"AVX2": ("avx2",), "AVX512": ("avx2", "avx512f")}.get(capability, ())
        return CpuInfo(platform.processor() or "unknown CPU", flags)
