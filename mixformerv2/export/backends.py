"""The runtimes that run the tracker's network: PyTorch, ONNX Runtime and OpenVINO, at fp32, bf16, fp16 or int8.

Every backend offers what the tracker calls:

* ``encode_templates(template, online) -> cache``: once per template update (the cache is opaque to the caller);
* ``forward_search(cache, search) -> output`` with ``box_xyxy_norm (1, 4)`` float32 and ``score_logit (1,)`` or
  None: every frame;
* ``forward_full(template, online, search)`` (PyTorch only): the full forward, templates included;

and the attributes ``backend``, ``precision`` and ``cached`` that ``run.json`` records. Inputs are normalised RGB
tensors (1, 3, H, W) float32 on the backend's device.

Precisions (each an explicit choice; ``auto`` picks one, see ``auto_candidates``: where there are several, it
builds them all and keeps the fastest per frame on this machine, timed when it is built):

* ``torch``: ``fp32``; ``bf16`` (CPU with native bf16, or CUDA) and ``fp16`` (CUDA): a copy whose backbone holds
  the weights in that type (autocast would convert every weight on every frame); the heads stay fp32. On the CPU
  the attention is the explicit softmax(q k^T) v, faster there in bf16 than the fused kernel;
  ``int8``: dynamic quantisation of the backbone's linear layers (``torch.ao``; the cached path gets its own
  q and kv layers first, ``MixedAttention.split_qkv``). ``compile_step=True`` wraps the per-frame step in
  ``torch.compile`` (with CUDA graphs on a GPU).
* ``onnxruntime``: ``fp32``; ``int8``: the per-frame graph with dynamically quantised matrix products
  (``onnxruntime.quantization.quantize_dynamic``, int8 weights per output channel; the heads stay fp32); the
  template encoder stays fp32, it runs once per template update.
* ``openvino``: ``fp32`` and ``bf16`` (its inference precision; native bf16 CPUs only); ``int8``: the per-frame
  graph with statically quantised linear layers of the backbone (QDQ graph from ``onnxruntime.quantization``: int8
  weights per output channel, uint8 activations whose ranges are calibrated on tracker crops of synthetic scenes,
  ``calibration.calibration_feeds``, or the export's own graph calibrated on a dataset, ``tools/export.py
  --calibrate``), run on OpenVINO's int8 kernels (AMX-int8 / VNNI); the attention products and the heads stay in
  float, bf16 where the CPU has it natively, else fp32.

The graphs of the ONNX backends come from an export folder (``tools/export.py``, verified against the model config
and checkpoint) or are exported when the backend is built.
"""
from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..config.schema import ModelConfig, TestConfig
from ..models.layers import MixedAttention, use_explicit_attention
from ..models.mixformer import MixFormerV2
from ..utils.errors import UserError
from .cpu import CpuInfo, cpu_info
from .onnx import ENCODER, INT8_STEP, STEP, export_onnx, graph_path, ort_session, read_export
from .optional import import_optional, is_installed
from .quantize import quantize_onnx_int8, quantize_static_int8

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = {"torch": ("fp32", "bf16", "fp16", "int8"), "onnxruntime": ("fp32", "int8"),
              "openvino": ("fp32", "bf16", "int8")}
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class BackendError(UserError):
    """A backend or precision that cannot run here (unknown, unsupported on this device or CPU, wrong model)."""


@dataclass
class StepOutput:
    """One frame's network output: box_xyxy_norm (1, 4) float32 in search-crop units, score_logit (1,) or None,
    side_logits (1, 4, num_bins)."""

    box_xyxy_norm: torch.Tensor
    score_logit: torch.Tensor | None
    side_logits: torch.Tensor


def _as_list(online) -> list[torch.Tensor]:
    return [online] if isinstance(online, torch.Tensor) else list(online)


# ---------------------------------------------------------------------------------------------------- torch
def _attention_layers(model: nn.Module) -> list[MixedAttention]:
    return [m for m in model.modules() if isinstance(m, MixedAttention)]


def quantize_dynamic_int8(model: MixFormerV2) -> MixFormerV2:
    """A copy of ``model`` whose backbone linear layers are dynamically quantised to int8 (weights per tensor,
    activations per call); the heads stay fp32. The cached path keeps working (``split_qkv``)."""
    deploy = copy.deepcopy(model).cpu().eval()
    for attn in _attention_layers(deploy):
        attn.split_qkv()
    with warnings.catch_warnings():  # torch.ao announces its move to torchao on every call
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        deploy.backbone = torch.ao.quantization.quantize_dynamic(deploy.backbone, {nn.Linear}, dtype=torch.qint8)
    return deploy


def half_copy(model: MixFormerV2, precision: str, device: torch.device) -> MixFormerV2:
    """A copy of ``model`` on ``device`` whose backbone holds bf16 or fp16 weights (heads fp32); on the CPU its
    attention is the explicit product (``MixedAttention.fused_attn = False``)."""
    deploy = copy.deepcopy(model).to(device).eval()
    deploy.backbone.to(_HALF[precision])
    return use_explicit_attention(deploy) if device.type == "cpu" else deploy


class TorchBackend:
    """The network in PyTorch.

    Args:
        model: the network (any module with the tracker's calls for fp32; a ``MixFormerV2`` for the others).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8`` (see the module doc).
        device: where it runs. cached: as ``MixFormerV2Tracker`` (None: the cached path where the model has one).
        compile_step: ``torch.compile`` the per-frame step (``reduce-overhead``, i.e. CUDA graphs, on a GPU).
    """

    backend = "torch"

    def __init__(self, model: nn.Module, precision: str = "fp32", device: torch.device | str = "cpu",
                 cached: bool | None = None, compile_step: bool = False):
        self.device = torch.device(device)
        has_cache = hasattr(model, "encode_templates")
        if cached and not has_cache:
            raise ValueError(f"the cached template path was asked for, but {type(model).__name__} has none (no "
                             "encode_templates); track with the full forward (--no-cache)")
        self.cached = has_cache if cached is None else bool(cached)
        self.precision = precision
        self._dtype = _HALF.get(precision)
        model = model.to(self.device).eval()
        if precision != "fp32" and not isinstance(model, MixFormerV2):
            raise BackendError(f"precision {precision}: needs the mixformerv2 student, not {type(model).__name__}")
        if precision == "int8":
            if self.device.type != "cpu":
                raise BackendError("precision int8 (dynamic quantisation) runs on the CPU only; use --device cpu")
            model = quantize_dynamic_int8(model)
        elif self._dtype is not None:
            model = half_copy(model, precision, self.device)
        self.model = model
        self.compiled = compile_step
        self._step = self._search
        if compile_step:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._step = torch.compile(self._search, mode=mode, dynamic=False)

    def encode_templates(self, template: torch.Tensor, online):
        if self._dtype is None:
            return self.model.encode_templates(template, online)
        return self.model.backbone.encode_templates(template.to(self._dtype),
                                                    [o.to(self._dtype) for o in _as_list(online)])

    def _search(self, cache, search: torch.Tensor):
        if self._dtype is None:
            return self.model.forward_search(cache, search)
        tokens = self.model.backbone.forward_search(cache, search.to(self._dtype), num_outputs=4)
        return self.model.forward_head(tokens.float())

    def forward_search(self, cache, search: torch.Tensor):
        return self._step(cache, search)

    def forward_full(self, template: torch.Tensor, online, search: torch.Tensor):
        if self._dtype is None:
            return self.model(template, online, search)
        x, _ = self.model.backbone.forward_features(template.to(self._dtype),
                                                    [o.to(self._dtype) for o in _as_list(online)],
                                                    search.to(self._dtype))
        return self.model.forward_head(x[:, -4:].float())


# ----------------------------------------------------------------------------------------------- ONNX based
def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def _single_online(online) -> torch.Tensor:
    online = _as_list(online)
    if len(online) != 1:
        raise BackendError(f"the ONNX graphs take one online template, the tracker gave {len(online)} "
                           "(test.online_size > 1 runs on --backend torch)")
    return online[0]


def _step_output(outputs: dict[str, np.ndarray]) -> StepOutput:
    score = outputs.get("score_logit")
    return StepOutput(torch.from_numpy(np.array(outputs["box_xyxy_norm"])),
                      None if score is None else torch.from_numpy(np.array(score)),
                      torch.from_numpy(np.array(outputs["side_logits"])))


class OnnxRuntimeBackend:
    """Both graphs in ONNX Runtime (CPU). encoder_path, step_path: the graph files (``step_path`` already quantised
    for int8: ``quantize_onnx_int8``); precision: what they compute, as ``run.json`` records it; threads: intra-op
    threads (default: torch's thread count)."""

    backend = "onnxruntime"
    cached = True

    def __init__(self, encoder_path: str | Path, step_path: str | Path, precision: str = "fp32",
                 threads: int | None = None):
        self.precision = precision
        self._encoder = ort_session(encoder_path, threads)
        self._step = ort_session(step_path, threads)
        self._outputs = [o.name for o in self._step.get_outputs()]

    def encode_templates(self, template: torch.Tensor, online) -> np.ndarray:
        feed = {"template": _numpy(template), "online_template": _numpy(_single_online(online))}
        return self._encoder.run(None, feed)[0]

    def forward_search(self, cache: np.ndarray, search: torch.Tensor) -> StepOutput:
        outputs = self._step.run(None, {"search": _numpy(search), "template_kv": cache})
        return _step_output(dict(zip(self._outputs, outputs)))


class OpenVinoBackend:
    """Both graphs in OpenVINO on the CPU. precision: ``fp32``, ``bf16`` (inference precision) or ``int8``
    (``step_path`` already quantised: ``quantize_static_int8``; the float parts in bf16 where ``native_bf16``).

    The template cache is an ``openvino.Tensor`` in the step's compute type (bf16 where the step runs in bf16), bound
    to the step once per template update: every frame then passes the search crop only (measured on MixFormerV2-S's
    int8 step: 5-8 % faster than converting and copying the float32 cache each frame, and the same outputs)."""

    backend = "openvino"
    cached = True
    calibration: str | None = None  # int8: what its activation ranges were calibrated on (``build_backend`` sets it)

    def __init__(self, encoder_path: str | Path, step_path: str | Path, precision: str = "fp32",
                 threads: int | None = None, native_bf16: bool = False):
        ov = import_optional("openvino")
        from openvino.preprocess import PrePostProcessor

        self.precision, self._tensor = precision, ov.Tensor
        core = ov.Core()
        half = precision == "bf16" or (precision == "int8" and native_bf16)
        config = {"INFERENCE_PRECISION_HINT": "bf16" if half else "f32",
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
                  "ENABLE_CPU_PINNING": False}
        encoder, step = core.read_model(str(encoder_path)), core.read_model(str(step_path))
        if half:  # the cache crosses from one graph to the other in bf16
            encoder_io, step_io = PrePostProcessor(encoder), PrePostProcessor(step)
            encoder_io.output("template_kv").tensor().set_element_type(ov.Type.bf16)
            step_io.input("template_kv").tensor().set_element_type(ov.Type.bf16)
            encoder, step = encoder_io.build(), step_io.build()
        self._encoder = core.compile_model(encoder, "CPU", config).create_infer_request()
        step = core.compile_model(step, "CPU", config)
        self._outputs = [o.get_any_name() for o in step.outputs]
        self._step = step.create_infer_request()
        self._bound = None  # the cache bound to the step's template_kv input

    def encode_templates(self, template: torch.Tensor, online):
        """-> the template cache, an ``openvino.Tensor`` of its own (the request reuses its output buffer)."""
        self._encoder.infer({"template": _numpy(template), "online_template": _numpy(_single_online(online))})
        out = self._encoder.get_output_tensor(0)
        cache = self._tensor(out.element_type, out.shape)
        out.copy_to(cache)
        return cache

    def forward_search(self, cache, search: torch.Tensor) -> StepOutput:
        if cache is not self._bound:
            self._step.set_tensor("template_kv", cache)
            self._bound = cache
        result = self._step.infer({"search": _numpy(search)}, share_inputs=True)
        return _step_output({name: result[name] for name in self._outputs})


# ---------------------------------------------------------------------------------------------- building
def auto_candidates(cpu: CpuInfo, device: torch.device, installed: Callable[[str], bool] | None = None
                    ) -> list[tuple[str, str]]:
    """The (backend, precision) pairs ``auto`` chooses among on ``cpu`` / ``device``, in order of preference.

    * CUDA: torch fp16.
    * CPU: ONNX Runtime int8 (dynamic; int8 products: VNNI/AMX-int8, or AVX2's 16-bit multiply-adds) where
      installed, and OpenVINO int8 (static; its quantiser is ONNX Runtime's) where both are. Which is faster depends
      on the model, the CPU and its load (``build_backend`` times them): on the 2-core AMX machine of the README's
      table OpenVINO int8 (int8 linear layers, bf16 attention) ran S 5.4-5.7x and B 5.9-6.5x faster than the fp32
      full forward over the runs, ONNX Runtime int8 (attention in fp32) 4.0-4.3x for both. OpenVINO without
      onnxruntime: OpenVINO bf16 where bf16 is native. Neither: torch bf16 where bf16 is native, else torch fp32 on
      the cached path (bf16 would be emulated).
    """
    installed = installed or is_installed
    if device.type == "cuda":
        return [("torch", "fp16")]
    if installed("onnxruntime"):
        return [("onnxruntime", "int8")] + ([("openvino", "int8")] if installed("openvino") else [])
    if cpu.native_bf16:
        return [("openvino", "bf16")] if installed("openvino") else [("torch", "bf16")]
    return [("torch", "fp32")]


def choose_auto(cpu: CpuInfo, device: torch.device, installed: Callable[[str], bool] | None = None,
                times_ms: dict[tuple[str, str], float] | None = None) -> tuple[str, str, str]:
    """(backend, precision, reason) that ``auto`` picks among ``auto_candidates``: the only one, or the fastest by
    ``times_ms`` (ms per frame of each candidate, measured here; without them the first)."""
    candidates = auto_candidates(cpu, device, installed)
    if device.type == "cuda":
        return "torch", "fp16", "CUDA device: fp16 weights on the tensor cores"
    flags = ", ".join(cpu.flags) or "none of avx2, avx512f, avx512_bf16, amx_tile"
    if len(candidates) > 1:
        if not times_ms:
            backend, precision = candidates[0]
            names = ", ".join(f"{b} {p}" for b, p in candidates)
            return backend, precision, f"CPU flags {flags}: the first of {names} (not timed)"
        backend, precision = min(candidates, key=lambda c: times_ms[c])
        timed = ", ".join(f"{b} {p} {times_ms[(b, p)]:.1f} ms" for b, p in candidates)
        return backend, precision, f"CPU flags {flags}: the fastest per frame timed here ({timed})"
    backend, precision = candidates[0]
    if backend == "onnxruntime":
        return backend, precision, f"CPU flags {flags}: ONNX Runtime int8 (int8 matrix products)"
    if backend == "openvino":
        return backend, precision, f"CPU flags {flags} (native bf16), onnxruntime not installed: OpenVINO bf16"
    if precision == "bf16":
        return backend, precision, f"CPU flags {flags} (native bf16), onnxruntime/openvino not installed: torch bf16"
    return backend, precision, (f"CPU flags {flags}: no native bf16 and onnxruntime is not installed (pip install "
                                "'mixformerv2[export]' for int8): torch fp32 on the cached path")


def time_backends(runtimes: dict, cfg: ModelConfig, calls: int = 15) -> dict:
    """Median ms of ``forward_search`` per runtime on seeded random crops, the runtimes taking turns in blocks of 5
    (``utils.timing.interleaved_median_ms``) so that a change in load hits all alike."""
    from ..utils.timing import interleaved_median_ms
    from .onnx import example_inputs

    x = example_inputs(cfg, 0)
    fns = {}
    for key, runtime in runtimes.items():
        cache = runtime.encode_templates(x["template"], x["online_template"])
        fns[key] = lambda r=runtime, c=cache: r.forward_search(c, x["search"])
    with torch.inference_mode():
        return interleaved_median_ms(fns, torch.device("cpu"), runs=calls, warmup=2, block=5)


def check_precision(backend: str, precision: str, device: torch.device, cpu: CpuInfo) -> None:
    """``BackendError`` for an unknown backend or precision, or one this device or CPU cannot run well."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (known: auto, {', '.join(BACKENDS)})")
    if precision not in PRECISIONS[backend]:
        raise BackendError(f"--backend {backend} has no precision {precision!r} (it has: "
                           f"{', '.join(PRECISIONS[backend])})")
    if backend != "torch" and device.type != "cpu":
        raise BackendError(f"--backend {backend} runs on the CPU; use --device cpu (or --backend torch)")
    if device.type == "cpu" and precision == "fp16":
        raise BackendError("precision fp16 is for CUDA devices; on the CPU use bf16 (native bf16 CPUs) or int8")
    if device.type == "cpu" and precision == "bf16" and not cpu.native_bf16:
        raise BackendError(f"precision bf16: this CPU has no native bf16 (AVX-512_BF16 or AMX; it has "
                           f"{', '.join(cpu.flags) or 'neither'}), where bf16 is emulated and slower than fp32 "
                           "(401 ms against 64 ms measured on AVX2); use fp32 or int8")
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise BackendError("precision bf16: this GPU has no bf16; use fp16")


def unavailable_reason(backend: str, precision: str, device: torch.device, cpu: CpuInfo) -> str | None:
    """Why ``backend`` at ``precision`` cannot run here (not installed, no native bf16, ...), or None."""
    if backend != "torch" and not is_installed(backend):
        return f"{backend} is not installed"
    try:
        check_precision(backend, precision, device, cpu)
    except BackendError as err:
        return str(err)
    return None


def build_backend(model: nn.Module, cfg: ModelConfig, backend: str = "torch", precision: str | None = None,
                  device: torch.device | str = "cpu", cached: bool | None = None,
                  export_dir: str | Path | None = None, checkpoint_sha256: str | None = None,
                  threads: int | None = None, compile_step: bool = False, cpu: CpuInfo | None = None,
                  settings: TestConfig | None = None):
    """The backend that runs ``model`` (built from ``cfg``, weights loaded) for the tracker.

    backend: ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` (which chooses the precision too and logs why:
    with several ``auto_candidates`` it builds them all and keeps the fastest, ``time_backends``). precision: default
    ``fp32``. export_dir: graphs of ``tools/export.py`` for the ONNX backends, verified against ``cfg`` and
    ``checkpoint_sha256``; without it the graphs are exported now (a few seconds). threads: the ONNX backends'
    threads (default: torch's). compile_step: see ``TorchBackend``. settings: the tracker's crop factors, which
    OpenVINO int8 calibrates with (default ``TestConfig()``). Raises ``BackendError`` (or ``MissingBackendError``,
    naming the extra to install).
    """
    device = torch.device(device)
    cpu = cpu or cpu_info()
    if backend == "auto":
        if precision is not None:
            raise BackendError(f"--backend auto chooses the precision itself; drop --precision {precision} or "
                               "name a backend")
        built = {}
        if cached is False:
            backend, precision, reason = "torch", "fp32", "the full forward (--no-cache) runs on torch only"
        elif len(candidates := auto_candidates(cpu, device)) > 1:
            with tempfile.TemporaryDirectory(prefix="mixformerv2_onnx_") as tmp:
                if export_dir is None:  # once for all candidates
                    export_onnx(model, cfg, tmp)
                built = {c: build_backend(model, cfg, *c, device, cached, export_dir or tmp, checkpoint_sha256,
                                          threads, cpu=cpu, settings=settings) for c in candidates}
            backend, precision, reason = choose_auto(cpu, device, times_ms=time_backends(built, cfg))
        else:
            backend, precision, reason = choose_auto(cpu, device)
        logger.info("--backend auto: %s %s (%s)", backend, precision, reason)
        if built:
            return built[(backend, precision)]
    precision = precision or "fp32"
    check_precision(backend, precision, device, cpu)
    if backend == "torch":
        return TorchBackend(model, precision, device, cached, compile_step)
    if cached is False:
        raise BackendError(f"--backend {backend} runs the cached template path only (the exported graphs); drop "
                           "--no-cache or use --backend torch")
    import_optional(backend)
    with tempfile.TemporaryDirectory(prefix="mixformerv2_onnx_") as tmp:
        if export_dir is None:
            export_onnx(model, cfg, tmp)
            export_dir = tmp
        manifest = read_export(export_dir, cfg, checkpoint_sha256)
        encoder, step = graph_path(export_dir, manifest, ENCODER), graph_path(export_dir, manifest, STEP)
        if precision == "int8" and backend == "onnxruntime":
            step = quantize_onnx_int8(step, Path(tmp) / "search_step.int8.onnx")
        elif precision == "int8" and (calibrated := graph_path(export_dir, manifest, INT8_STEP)) is not None:
            step, calibration = calibrated, manifest["graphs"][INT8_STEP]["calibration"]["source"]
        elif precision == "int8":
            from .calibration import calibration_feeds

            feeds = calibration_feeds(model, cfg, settings=settings)
            step = quantize_static_int8(step, Path(tmp) / "search_step.qdq.onnx", feeds)
            calibration = f"synthetic scenes ({len(feeds)} frame pairs)"
        if backend == "onnxruntime":  # the graphs are loaded before the folder goes
            network = OnnxRuntimeBackend(encoder, step, precision, threads)
        else:
            network = OpenVinoBackend(encoder, step, precision, threads, cpu.native_bf16)
            if precision == "int8":
                network.calibration = calibration
                logger.info("openvino int8: activation ranges calibrated on %s", calibration)
    if precision == "fp32":
        check_fp32_parity(network, model, cfg, backend)
    return network


FP32_BOX_TOLERANCE = 1e-4  # normalised box units: the export parity bound


def check_fp32_parity(network, model: nn.Module, cfg: ModelConfig, backend: str) -> None:
    """Raise ``BackendError`` unless an fp32 runtime gives ``model``'s boxes (to ``FP32_BOX_TOLERANCE``) on seeded
    random crops. Why: a runtime's kernels can be wrong for a graph that the export check (against ONNX Runtime)
    passed; measured: OpenVINO 2026.4 at f32 moves the quickstart student's boxes by up to 0.13 on an AMX CPU,
    while its bf16 and ONNX Runtime agree."""
    g = torch.Generator().manual_seed(0)
    template = torch.randn(1, 3, cfg.template_size, cfg.template_size, generator=g)
    search = torch.randn(1, 3, cfg.search_size, cfg.search_size, generator=g)
    reference = TorchBackend(model, "fp32", torch.device("cpu"), True, False)
    with torch.inference_mode():
        expected = reference.forward_search(reference.encode_templates(template, template), search)
        got = network.forward_search(network.encode_templates(template, template), search)
    error = (got.box_xyxy_norm.float() - expected.box_xyxy_norm.float().cpu()).abs().max().item()
    if not error <= FP32_BOX_TOLERANCE:
        raise BackendError(f"--backend {backend} --precision fp32 disagrees with PyTorch on this model's boxes by "
                           f"{error:.2g} (bound {FP32_BOX_TOLERANCE:g}): the runtime computes this graph wrongly on "
                           "this machine; use --backend onnxruntime or torch")
