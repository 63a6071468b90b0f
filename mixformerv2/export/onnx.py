"""ONNX graphs of the tracker's two network calls, their manifest, and parity with PyTorch.

An export folder (``tools/export.py``) holds:

* ``template_encoder.onnx``: ``template`` and ``online_template`` (1, 3, T, T) float32, normalised RGB ->
  ``template_kv`` (depth, 2, 1, heads, 2 * (T/p)^2, head_dim): every layer's template keys and values, the
  ``TemplateCache`` as one tensor (``stack_cache``). Run once per template update.
* ``search_step.onnx``: ``search`` (1, 3, S, S) and ``template_kv`` -> ``box_xyxy_norm`` (1, 4) in search-crop
  units, ``score_logit`` (1,) (models with a score head only) and ``side_logits`` (1, 4, num_bins) (left, right,
  top, bottom; their softmax is each side's distribution over the bins). Run every frame.
* ``manifest.json`` (written last: an export without one is incomplete): format and version, opset, every graph's
  file, SHA-256, node count and input/output names, shapes and types, the resolved model config, the checkpoint and
  its SHA-256, library versions and the measured parity with PyTorch.
* optionally ``search_step.int8.onnx`` (``tools/export.py --calibrate``): the per-frame graph with static int8
  linear layers calibrated on frames of a dataset, which ``--backend openvino --precision int8`` then runs; the
  manifest lists it as ``search_step_int8`` with its calibration source.

Shapes are static: batch 1 and one online template, the tracker's setting on every benchmark (``test.online_size``
1). The graphs come from the TorchScript-based exporter (``dynamo=False``: the dynamo exporter needs onnxscript,
which is not a dependency), with constant folding; ``simplify`` then applies ONNX Runtime's basic graph
optimisations (constant folding, redundant-node elimination, standard operators only) where they remove nodes.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config.load import config_to_dict
from ..config.schema import ModelConfig
from ..models.layers import use_explicit_attention
from ..models.vit import TemplateCache
from ..utils.errors import UserError
from ..utils.io import atomic_write_bytes, atomic_write_text, sha256_file
from ..utils.version import code_version
from .optional import import_optional

logger = logging.getLogger(__name__)

FORMAT = "mixformerv2-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| on boxes and scores (float32)
MANIFEST = "manifest.json"
ENCODER, STEP = "template_encoder", "search_step"
INT8_STEP = "search_step_int8"  # optional: the step graph quantised for OpenVINO int8 (calibration.calibrate_export)
_ONLINE_TEMPLATES = 1


class ExportError(UserError):
    """An export that cannot be written or read back (wrong model, another format version, a changed file, parity
    beyond the tolerance); the message names the folder or file."""


# ------------------------------------------------------------------------------------------------- graphs
def stack_cache(cache: TemplateCache) -> torch.Tensor:
    """TemplateCache -> (depth, 2, B, heads, Nt, head_dim): keys at [:, 0], values at [:, 1]."""
    return torch.stack([torch.stack(layer_kv) for layer_kv in cache.kv])


def unstack_cache(template_kv: torch.Tensor, num_templates: int = 1 + _ONLINE_TEMPLATES) -> TemplateCache:
    """Inverse of ``stack_cache`` (views, no copy)."""
    return TemplateCache([(template_kv[i, 0], template_kv[i, 1]) for i in range(template_kv.shape[0])],
                         num_templates)


class TemplateEncoderGraph(nn.Module):
    """``model.encode_templates`` as a graph: (template, online_template) -> template_kv (see the module doc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, template: torch.Tensor, online_template: torch.Tensor) -> torch.Tensor:
        return stack_cache(self.model.encode_templates(template, online_template))


class SearchStepGraph(nn.Module):
    """``model.forward_search`` as a graph: (search, template_kv) -> box_xyxy_norm, [score_logit,] side_logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, search: torch.Tensor, template_kv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.forward_search(unstack_cache(template_kv), search)
        scores = (out.score_logit,) if out.score_logit is not None else ()
        return (out.box_xyxy_norm, *scores, out.side_logits)


def graph_io(cfg: ModelConfig) -> dict[str, dict[str, list[dict]]]:
    """The names, shapes and types of both graphs' inputs and outputs for a model config (what ``export_onnx``
    writes and ``read_export`` expects)."""
    t, s, p = cfg.template_size, cfg.search_size, cfg.patch_size
    kv = [cfg.depth, 2, 1, cfg.num_heads, (1 + _ONLINE_TEMPLATES) * (t // p) ** 2, cfg.embed_dim // cfg.num_heads]

    def spec(name, shape):
        return {"name": name, "shape": list(shape), "dtype": "float32"}

    step_outputs = [spec("box_xyxy_norm", [1, 4])]
    if cfg.score_head:
        step_outputs.append(spec("score_logit", [1]))
    step_outputs.append(spec("side_logits", [1, 4, cfg.num_bins]))
    return {
        ENCODER: {"inputs": [spec("template", [1, 3, t, t]), spec("online_template", [1, 3, t, t])],
                  "outputs": [spec("template_kv", kv)]},
        STEP: {"inputs": [spec("search", [1, 3, s, s]), spec("template_kv", kv)], "outputs": step_outputs},
    }


def example_inputs(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random normal template, online_template and search tensors of the model's sizes (batch 1)."""
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.template_size, cfg.search_size
    return {"template": torch.randn(1, 3, t, t, generator=g), "online_template": torch.randn(1, 3, t, t, generator=g),
            "search": torch.randn(1, 3, s, s, generator=g)}


def _check_exportable(model: nn.Module, cfg: ModelConfig) -> None:
    if cfg.name != "mixformerv2" or not hasattr(model, "encode_templates"):
        raise ExportError(f"model.name {cfg.name!r}: only the mixformerv2 student has the cached template path "
                          "that the ONNX graphs implement")


def _io_of(proto) -> dict[str, list[dict]]:
    """Inputs and outputs of an ONNX model as ``graph_io`` lists them (initialisers are not inputs)."""
    onnx = import_optional("onnx")
    initializers = {init.name for init in proto.graph.initializer}

    def describe(value):
        tensor = value.type.tensor_type
        return {"name": value.name, "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param
                                              for d in tensor.shape.dim],
                "dtype": str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))}

    return {"inputs": [describe(v) for v in proto.graph.input if v.name not in initializers],
            "outputs": [describe(v) for v in proto.graph.output]}


def _to_onnx(graph: nn.Module, args: tuple, io_spec: dict, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter announces its deprecation on every call, and the model's input-shape checks
        # trace as constants, which is right for these static-shape graphs
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(graph.eval(), args, buffer, input_names=[v["name"] for v in io_spec["inputs"]],
                          output_names=[v["name"] for v in io_spec["outputs"]], opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    return buffer.getvalue()


def simplify_onnx(proto):
    """ONNX Runtime's basic optimisations of ``proto`` (a ModelProto) as a plain ONNX model (operator sets that no
    node uses removed); returns ``proto`` itself when that removes no node."""
    onnx = import_optional("onnx")
    ort = import_optional("onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "simplified.onnx")
        ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        simplified = onnx.load(options.optimized_model_filepath)
    used = {node.domain for node in simplified.graph.node} | {""}
    kept = [op for op in simplified.opset_import if op.domain in used]
    del simplified.opset_import[:]
    simplified.opset_import.extend(kept)
    onnx.checker.check_model(simplified, full_check=True)
    return simplified if len(simplified.graph.node) < len(proto.graph.node) else proto


# ------------------------------------------------------------------------------------------------- export
def export_onnx(model: nn.Module, cfg: ModelConfig, out_dir: str | Path, checkpoint: str | Path | None = None,
                opset: int = DEFAULT_OPSET, simplify: bool = True, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Write both graphs and ``manifest.json`` into ``out_dir``; returns the manifest.

    model: the network of ``cfg`` with its weights loaded (from ``checkpoint``, recorded with its SHA-256).
    Each graph passes ``onnx.checker`` (full check); parity with PyTorch is measured with ONNX Runtime on random
    inputs and an ``ExportError`` is raised (before the manifest is written) when boxes or scores differ by more
    than ``tolerance``.
    """
    onnx = import_optional("onnx")
    _check_exportable(model, cfg)
    out_dir = Path(out_dir)
    model = model.eval()
    io_spec = graph_io(cfg)
    x = example_inputs(cfg)
    with torch.inference_mode():
        template_kv = stack_cache(model.encode_templates(x["template"], x["online_template"]))
    # The explicit attention product exports as MatMul(q * scale, k^T) with the keys unscaled, which OpenVINO fuses,
    # key transpose included, into its attention kernel; the SDPA export scales q and k^T and leaves a transpose of
    # the keys per layer (measured: MixFormerV2-S's OpenVINO int8 step 7 % slower). ONNX Runtime: the same speed.
    explicit = use_explicit_attention(copy.deepcopy(model))
    jobs = {ENCODER: (TemplateEncoderGraph(explicit), (x["template"], x["online_template"])),
            STEP: (SearchStepGraph(explicit), (x["search"], template_kv))}
    graphs = {}
    for name, (graph, args) in jobs.items():
        proto = onnx.load_from_string(_to_onnx(graph, args, io_spec[name], opset))
        onnx.checker.check_model(proto, full_check=True)
        exported_nodes = len(proto.graph.node)
        if simplify:
            proto = simplify_onnx(proto)
        if _io_of(proto) != io_spec[name]:
            raise ExportError(f"{name}: the exported graph's inputs/outputs {_io_of(proto)} differ from the "
                              f"expected {io_spec[name]}")
        path = out_dir / f"{name}.onnx"
        atomic_write_bytes(path, proto.SerializeToString())
        (out_dir / f"{name}.int8.onnx").unlink(missing_ok=True)  # quantised from an earlier export: stale
        graphs[name] = {"file": path.name, "sha256": sha256_file(path), "nodes": len(proto.graph.node),
                        "nodes_exported": exported_nodes, **io_spec[name]}
        logger.info("%s: %d nodes (%d as exported)", path, len(proto.graph.node), exported_nodes)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": opset, "graphs": graphs,
        "online_templates": _ONLINE_TEMPLATES, "model": config_to_dict(cfg),
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint is not None else None,
        "code_version": code_version(), "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest["parity"] = check_parity(model, out_dir, manifest, tolerance)
    write_manifest(out_dir, manifest)
    return manifest


def write_manifest(export_dir: str | Path, manifest: dict) -> None:
    """Write ``manifest`` as the folder's ``manifest.json`` (atomically: a reader sees the old one or the new)."""
    atomic_write_text(Path(export_dir) / MANIFEST, json.dumps(manifest, indent=2) + "\n")


# -------------------------------------------------------------------------------------------- reading back
def _first_difference(old, new, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix.rstrip('.')}: {old!r} in the export, {new!r} here"


def read_export(export_dir: str | Path, cfg: ModelConfig | None = None,
                checkpoint_sha256: str | None = None) -> dict:
    """Read and verify ``<export_dir>/manifest.json``; returns it.

    ``ExportError`` (one line naming the folder or file) for: no or unreadable manifest, another format or format
    version, a missing or changed graph file (SHA-256), inputs/outputs other than this code's for the model, a
    model config other than ``cfg``, or a checkpoint other than the one with ``checkpoint_sha256``.
    """
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: no manifest; not a complete export of tools/export.py") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: written by another version of the export (format_version "
                          f"{manifest.get('format_version')!r}; this code reads {FORMAT_VERSION}); re-export with "
                          "tools/export.py")
    try:
        model_cfg = ModelConfig(**manifest["model"])
    except (KeyError, TypeError) as err:
        raise ExportError(f"{path}: model config unreadable ({err}); re-export with tools/export.py") from None
    for name, expected in graph_io(model_cfg).items():
        graph = manifest.get("graphs", {}).get(name)
        if not isinstance(graph, dict):
            raise ExportError(f"{path}: no {name} graph listed")
        if {k: graph.get(k) for k in ("inputs", "outputs")} != expected:
            raise ExportError(f"{path}: {name}: inputs/outputs differ from this code's ({expected}); re-export "
                              "with tools/export.py")
    for name, graph in manifest["graphs"].items():
        if not isinstance(graph, dict) or not isinstance(graph.get("file"), str):
            raise ExportError(f"{path}: graph {name}: no file named; re-export with tools/export.py")
        file = export_dir / graph["file"]
        if not file.is_file():
            raise ExportError(f"{file}: missing (listed in {path})")
        if sha256_file(file) != graph.get("sha256"):
            raise ExportError(f"{file}: changed since the export (SHA-256 differs from {path}); re-export")
    if cfg is not None:
        diff = _first_difference(manifest["model"], config_to_dict(cfg))
        if diff:
            raise ExportError(f"{path}: exported for another model config: model.{diff}")
    if checkpoint_sha256 is not None and manifest.get("checkpoint_sha256") != checkpoint_sha256:
        raise ExportError(f"{path}: exported from another checkpoint ({manifest.get('checkpoint')}, SHA-256 "
                          f"{str(manifest.get('checkpoint_sha256'))[:12]}...) than the one given "
                          f"({checkpoint_sha256[:12]}...)")
    return manifest


def graph_path(export_dir: str | Path, manifest: dict, name: str) -> Path | None:
    """The file of graph ``name`` (``ENCODER``, ``STEP`` or ``INT8_STEP``) of a verified export; None for an
    ``INT8_STEP`` the export has not."""
    graph = manifest["graphs"].get(name)
    return None if graph is None else Path(export_dir) / graph["file"]


# ---------------------------------------------------------------------------------------------------- parity
def ort_session(model: str | Path | bytes, threads: int | None = None):
    """A CPU ``onnxruntime.InferenceSession`` of a graph file (or its bytes) with ``threads`` intra-op threads
    (default: torch's thread count) and one inter-op thread, all graph optimisations on."""
    ort = import_optional("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def check_parity(model: nn.Module, export_dir: str | Path, manifest: dict,
                 tolerance: float = PARITY_TOLERANCE, seed: int = 1) -> dict:
    """Run both graphs in ONNX Runtime (encoder output fed to the step, as the tracker does) and ``model`` in
    PyTorch on the same random inputs; returns ``{"runtime", "tolerance", "max_abs_diff": {output: float}}``.

    Raises ``ExportError`` when ``box_xyxy_norm`` or ``score_logit`` differ by more than ``tolerance``.
    """
    ort = import_optional("onnxruntime")
    cfg = ModelConfig(**manifest["model"])
    x = example_inputs(cfg, seed)
    with torch.inference_mode():
        cache = model.encode_templates(x["template"], x["online_template"])
        ref = model.forward_search(cache, x["search"])
    reference = {"template_kv": stack_cache(cache), "box_xyxy_norm": ref.box_xyxy_norm,
                 "score_logit": ref.score_logit, "side_logits": ref.side_logits}
    encoder = ort_session(graph_path(export_dir, manifest, ENCODER))
    step = ort_session(graph_path(export_dir, manifest, STEP))
    (template_kv,) = encoder.run(None, {"template": x["template"].numpy(),
                                        "online_template": x["online_template"].numpy()})
    outputs = step.run(None, {"search": x["search"].numpy(), "template_kv": template_kv})
    names = [o["name"] for o in manifest["graphs"][STEP]["outputs"]]
    got = {"template_kv": template_kv, **dict(zip(names, outputs))}
    diffs = {k: float(np.abs(got[k] - reference[k].numpy()).max()) for k in got}
    bad = {k: v for k, v in diffs.items() if k in ("box_xyxy_norm", "score_logit") and not v <= tolerance}
    if bad:
        raise ExportError(f"{export_dir}: ONNX Runtime and PyTorch differ beyond {tolerance:g}: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()))
    logger.info("parity with PyTorch (max |difference|): %s", ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
    return {"runtime": f"onnxruntime {ort.__version__}", "tolerance": tolerance, "max_abs_diff": diffs}
