"""Backends: quantisation composes with the cached path, bf16 where native only, auto's choice, trackers on every
backend agreeing on the synthetic benchmark, run.json naming backend and precision, one-line errors."""
import copy
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mixformerv2.config import Config
from mixformerv2.config import TestConfig as TrackerSettings
from mixformerv2.data.synthetic import generate_all
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.sequence import read_frame_rgb
from mixformerv2.export.backends import (BackendError, TorchBackend, build_backend, check_fp32_parity, check_precision,
                                         auto_candidates, choose_auto, quantize_dynamic_int8)
from mixformerv2.export.cpu import CpuInfo, parse_cpuinfo
from mixformerv2.export.calibration import calibration_feeds, sequence_frame_pairs
from mixformerv2.export.onnx import INT8_STEP, ExportError, example_inputs, export_onnx, read_export, stack_cache
from mixformerv2.export.quantize import quantize_onnx_int8, quantize_static_int8
from mixformerv2.export.optional import is_installed
from mixformerv2.models import build_model
from mixformerv2.tracking.compare import DitheredNetwork, Variant, compare_backends, format_comparison
from mixformerv2.tracking.tracker import MixFormerV2Tracker
from model_fixtures import TINY, write_tiny_model_files
from tool_loader import load_tool

AMX = CpuInfo("test CPU with AMX", ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"))
AVX2 = CpuInfo("test CPU, AVX2 only", ("avx2",))
CPU = torch.device("cpu")
needs_ort = pytest.mark.skipif(not is_installed("onnxruntime"), reason="onnxruntime is not installed (export extra)")
needs_ov = pytest.mark.skipif(not is_installed("openvino"),
                              reason="needs openvino (pip install 'mixformerv2[openvino]')")



@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(TINY).eval()


def assert_one_error_line(stderr: str, needle: str) -> None:
    """stderr holds exactly one ``test.py: error: ...`` line, naming ``needle``, and no traceback."""
    errors = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("test.py: error: ") and needle in errors[0], stderr
    assert "Traceback" not in stderr


def _outputs(run, x):
    with torch.inference_mode():
        return run.forward_search(run.encode_templates(x["template"], x["online_template"]), x["search"])


# ----------------------------------------------------------------------------------------------- layers
def test_split_qkv_and_the_explicit_attention_compute_the_same_function(tiny_model):
    x = example_inputs(TINY)
    reference = _outputs(tiny_model, x)
    model = copy.deepcopy(tiny_model)
    for block in model.backbone.blocks:
        block.attn.split_qkv()
        block.attn.fused_attn = False
    out = _outputs(model, x)
    assert (out.box_xyxy_norm - reference.box_xyxy_norm).abs().max() < 1e-6
    assert (out.side_logits - reference.side_logits).abs().max() < 1e-5
    with torch.inference_mode():
        full = model(x["template"], x["online_template"], x["search"])
    assert (full.box_xyxy_norm - reference.box_xyxy_norm).abs().max() < 1e-6


def test_dynamic_quantisation_composes_with_the_cached_path(tiny_model):
    """quantize_dynamic replaces the fused qkv layer, whose weight the cached path used to slice (a TypeError)."""
    quantized = quantize_dynamic_int8(tiny_model)
    assert "quantized" in type(quantized.backbone.blocks[0].attn.q_proj).__module__
    x = example_inputs(TINY)
    cached = _outputs(quantized, x)
    with torch.inference_mode():
        full = quantized(x["template"], x["online_template"], x["search"])
    fp32 = _outputs(tiny_model, x)
    assert (cached.box_xyxy_norm - full.box_xyxy_norm).abs().max() < 2e-2  # activation scales differ by path
    assert (cached.box_xyxy_norm - fp32.box_xyxy_norm).abs().max() < 2e-2
    assert not torch.equal(cached.box_xyxy_norm, fp32.box_xyxy_norm)  # it really is quantised


def test_bf16_backend_keeps_the_heads_in_fp32_and_stays_close(tiny_model):
    runtime = build_backend(tiny_model, TINY, "torch", "bf16", CPU, cpu=AMX)
    assert runtime.model.backbone.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert runtime.model.box_head.layers[0][0].weight.dtype == torch.float32
    assert not runtime.model.backbone.blocks[0].attn.fused_attn
    assert tiny_model.backbone.blocks[0].attn.qkv.weight.dtype == torch.float32  # the original is untouched
    x = example_inputs(TINY)
    out, ref = _outputs(runtime, x), _outputs(tiny_model, x)
    assert out.box_xyxy_norm.dtype == torch.float32
    assert (out.box_xyxy_norm - ref.box_xyxy_norm).abs().max() < 2e-2
    with torch.inference_mode():
        full = runtime.forward_full(x["template"], x["online_template"], x["search"])
    assert (full.box_xyxy_norm - ref.box_xyxy_norm).abs().max() < 2e-2


@needs_ort
def test_onnxruntime_int8_quantises_the_backbone_per_channel_and_keeps_the_heads(tiny_model, tmp_path):
    import onnx

    export_onnx(tiny_model, TINY, tmp_path)
    graph = onnx.load(quantize_onnx_int8(tmp_path / "search_step.onnx", tmp_path / "int8.onnx")).graph
    integer = [n.name for n in graph.node if n.op_type == "MatMulInteger"]
    # patch embedding + per block q, kv, proj, fc1, fc2 (2 blocks); none of the 4 head layers or the box decoding
    assert len(integer) == 1 + 2 * 5 and not any("_head/" in name for name in integer)
    assert sum(n.op_type in ("MatMul", "Gemm") and "_head/" in n.name for n in graph.node) == 4
    scales = [init for init in graph.initializer if init.name.endswith("_scale") and len(init.dims) == 1]
    assert scales and all(init.dims[0] in (32, 64) for init in scales)  # one scale per output channel


# ------------------------------------------------------------------------------------------ choices
def test_parse_cpuinfo_reads_model_and_flags():
    text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nflags\t\t: fpu avx2 avx512f amx_tile avx512_vnni\n" \
           "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    info = parse_cpuinfo(text)
    assert info == CpuInfo("Some CPU @ 2.0GHz", ("avx2", "avx512f", "avx512_vnni", "amx_tile"))
    assert info.native_bf16 and info.fast_int8
    assert not parse_cpuinfo("flags : avx2 fma\n").native_bf16


def test_bf16_only_where_native_and_fp16_only_on_cuda():
    check_precision("torch", "bf16", CPU, AMX)
    with pytest.raises(BackendError, match="no native bf16 .*401 ms against 64 ms"):
        check_precision("torch", "bf16", CPU, AVX2)
    with pytest.raises(BackendError, match="no native bf16"):
        check_precision("openvino", "bf16", CPU, AVX2)
    with pytest.raises(BackendError, match="fp16 is for CUDA"):
        check_precision("torch", "fp16", CPU, AMX)
    with pytest.raises(BackendError, match="has no precision 'bf16'"):
        check_precision("onnxruntime", "bf16", CPU, AMX)
    with pytest.raises(BackendError, match="runs on the CPU"):
        check_precision("onnxruntime", "fp32", torch.device("cuda"), AMX)
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        check_precision("tensorrt", "fp32", CPU, AMX)


def test_auto_picks_by_cpu_features_and_says_why():
    everything = lambda module: True  # noqa: E731
    nothing = lambda module: False  # noqa: E731
    assert auto_candidates(AMX, CPU, everything) == [("onnxruntime", "int8"), ("openvino", "int8")]
    backend, precision, reason = choose_auto(AMX, CPU, everything)
    assert (backend, precision) == ("onnxruntime", "int8") and "amx_tile" in reason and "not timed" in reason
    times = {("onnxruntime", "int8"): 30.0, ("openvino", "int8"): 20.0}
    backend, precision, reason = choose_auto(AMX, CPU, everything, times_ms=times)
    assert (backend, precision) == ("openvino", "int8")
    assert "the fastest per frame timed here (onnxruntime int8 30.0 ms, openvino int8 20.0 ms)" in reason
    assert auto_candidates(AVX2, CPU, everything) == [("onnxruntime", "int8"), ("openvino", "int8")]
    assert auto_candidates(AVX2, CPU, lambda m: m == "onnxruntime") == [("onnxruntime", "int8")]
    assert choose_auto(AMX, CPU, lambda m: m == "openvino")[:2] == ("openvino", "bf16")
    assert choose_auto(AMX, CPU, nothing)[:2] == ("torch", "bf16")
    backend, precision, reason = choose_auto(AVX2, CPU, everything)
    assert (backend, precision) == ("onnxruntime", "int8") and "avx2" in reason
    assert choose_auto(AVX2, CPU, lambda m: m == "openvino")[:2] == ("torch", "fp32")  # no bf16 to gain
    backend, precision, reason = choose_auto(AVX2, CPU, nothing)
    assert (backend, precision) == ("torch", "fp32") and "no native bf16" in reason
    assert choose_auto(AVX2, torch.device("cuda"), nothing)[:2] == ("torch", "fp16")
    with pytest.raises(BackendError, match="auto chooses the precision"):
        build_backend(build_model(TINY), TINY, "auto", "int8")


@needs_ort
def test_auto_logs_its_choice_and_the_tracker_reports_it(tiny_model, caplog, monkeypatch):
    monkeypatch.setattr("mixformerv2.export.backends.is_installed", lambda module: module == "onnxruntime")
    with caplog.at_level("INFO", logger="mixformerv2.export.backends"):
        runtime = build_backend(tiny_model, TINY, "auto", None, CPU, cpu=AVX2)
    assert (runtime.backend, runtime.precision) == ("onnxruntime", "int8")
    assert any("--backend auto: onnxruntime int8 (CPU flags avx2" in r.getMessage() for r in caplog.records)
    runtime = build_backend(tiny_model, TINY, "auto", None, CPU, cached=False, cpu=AVX2)
    assert (runtime.backend, runtime.precision, runtime.cached) == ("torch", "fp32", False)


@needs_ort
@needs_ov
def test_auto_times_its_candidates_and_keeps_the_fastest(tiny_model, caplog):
    with caplog.at_level("INFO", logger="mixformerv2.export.backends"):
        runtime = build_backend(tiny_model, TINY, "auto", None, CPU, cpu=AMX)
    message = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("--backend auto"))
    times = dict(re.findall(r"(onnxruntime int8|openvino int8) ([0-9.]+) ms", message))
    assert set(times) == {"onnxruntime int8", "openvino int8"}
    fastest = min(times, key=lambda k: float(times[k]))
    assert f"{runtime.backend} {runtime.precision}" == fastest and message.startswith(f"--backend auto: {fastest} (")


def test_backend_errors_are_specific(tiny_model, monkeypatch):
    with pytest.raises(BackendError, match="cached template path only"):
        build_backend(tiny_model, TINY, "onnxruntime", "fp32", CPU, cached=False)
    teacher = build_model(replace(TINY, name="mixvit", head_type="corner", head_channels=16))
    with pytest.raises(BackendError, match="needs the mixformerv2 student"):
        TorchBackend(teacher, "int8")
    monkeypatch.setitem(sys.modules, "openvino", None)
    from mixformerv2.export.optional import MissingBackendError

    with pytest.raises(MissingBackendError, match=r"mixformerv2\[openvino\]"):
        build_backend(tiny_model, TINY, "openvino", "fp32", CPU)
    with pytest.raises(BackendError, match="has no precision 'fp16'.*fp32, bf16, int8"):
        build_backend(tiny_model, TINY, "openvino", "fp16", CPU)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # OpenVINO int8 quantises with ONNX Runtime's tools
    with pytest.raises(MissingBackendError, match=r"mixformerv2\[export\]"):
        quantize_static_int8("unused.onnx", "unused.int8.onnx", [])


# ------------------------------------------------------------------------------------------- tracking
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    generate_all(root / "synthetic", "tiny", seed=0, formats=("lasot",))
    files = write_tiny_model_files(root)
    ds = get_dataset("lasot", root=root / "synthetic" / "lasot")
    return {"root": root, "data": root / "synthetic" / "lasot", "files": files,
            "sequences": [ds[i] for i in range(len(ds))]}


@needs_ort
def test_trackers_on_the_backends_agree_on_the_synthetic_test_split(synthetic):
    cfg = Config(model=TINY)
    variants = [Variant("torch", "fp32"), Variant("onnxruntime", "fp32")]
    if is_installed("openvino"):
        variants.append(Variant("openvino", "fp32"))
    result = compare_backends(cfg, synthetic["files"]["good"], synthetic["sequences"], "lasot", variants)
    assert result["reference"] == "torch_fp32" and result["frames"] == 48
    for key, row in result["variants"].items():
        assert row["mean_iou_to_reference"] >= 0.99, key
        assert abs(row["auc_delta"]) <= 0.5, key
    assert result["variants"]["torch_fp32"]["mean_iou_to_reference"] == 1.0


@needs_ort
def test_int8_accuracy_cost_is_measured_against_fp32(synthetic):
    cfg = Config(model=TINY)
    variants = [Variant("torch", "fp32"), Variant("onnxruntime", "int8"), Variant("torch", "fp32")]
    if is_installed("openvino"):
        variants.append(Variant("openvino", "int8"))
    result = compare_backends(cfg, synthetic["files"]["good"], synthetic["sequences"], "lasot", variants)
    for key in ("onnxruntime_int8", "openvino_int8")[:len(variants) - 2]:
        assert 0.5 < result["variants"][key]["mean_iou_to_reference"] < 1.0, key  # close, not the fp32 trajectory
    assert result["variants"]["torch_fp32"]["requested"] == ["torch", "torch"]  # tracked once


@needs_ort
def test_static_int8_quantises_the_backbone_linear_layers_only(tiny_model, tmp_path):
    import onnx

    manifest = export_onnx(tiny_model, TINY, tmp_path / "onnx")
    step = tmp_path / "onnx" / manifest["graphs"]["search_step"]["file"]
    feeds = calibration_feeds(tiny_model, TINY, count=4)
    out = quantize_static_int8(step, tmp_path / "qdq.onnx", feeds)
    graph = onnx.load(str(out)).graph
    made_by = {o: node for node in graph.node for o in node.output}
    quantised = {node.name for node in graph.node if node.op_type in ("MatMul", "Gemm")
                 and node.input[0] in made_by and made_by[node.input[0]].op_type == "DequantizeLinear"}
    products = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")]
    linear = {n.name for n in products if "_head/" not in n.name and len(n.input) > 1 and n.input[1] in made_by
              and made_by[n.input[1]].op_type == "DequantizeLinear"}  # weights dequantised from int8
    assert quantised == linear and len(linear) == 1 + 5 * TINY.depth  # patch embedding; q, kv, proj, fc1, fc2
    assert not any("_head/" in name for name in quantised)


def test_calibration_feeds_are_tracker_crops_of_synthetic_scenes(tiny_model):
    feeds = calibration_feeds(tiny_model, TINY, count=3)
    again = calibration_feeds(tiny_model, TINY, count=3)
    assert len(feeds) == 3 and all(np.array_equal(a["search"], b["search"]) for a, b in zip(feeds, again))
    assert feeds[0]["search"].shape == (1, 3, TINY.search_size, TINY.search_size)
    cache = tiny_model.encode_templates(*[torch.from_numpy(np.zeros((1, 3, TINY.template_size, TINY.template_size),
                                                                    np.float32))] * 2)
    assert feeds[0]["template_kv"].shape == stack_cache(cache).shape
    assert all(f["search"].std() > 0.2 for f in feeds)  # normalised image content, not padding


def test_calibration_pairs_are_spread_over_the_sequences_and_skip_frames_without_a_box(synthetic):
    sequences = synthetic["sequences"]
    blank = replace(sequences[1], gt_xywh=np.full_like(sequences[1].gt_xywh, np.nan),
                    visible=np.zeros(len(sequences[1]), bool))  # no valid box at all
    late = replace(sequences[0], visible=np.arange(len(sequences[0])) >= 5)  # frames 0-4 out of view
    chosen = [late, blank, *sequences[2:]]
    pairs = sequence_frame_pairs(chosen, count=2 * len(chosen), gap=3, seed=1)
    assert len(pairs) == 2 * (len(chosen) - 1)  # every sequence picked twice; the blank one gives no pair
    again = sequence_frame_pairs(chosen, count=2 * len(chosen), gap=3, seed=1)
    assert all(np.array_equal(a[2], b[2]) and a[1] == b[1] for a, b in zip(pairs, again))
    rows = [list(map(float, box)) for box in late.gt_xywh]
    for template_image, template_box, search_image, search_box in sequence_frame_pairs([late], count=6, gap=3):
        first, second = rows.index(template_box), rows.index(search_box)
        assert 5 <= first and 5 <= second and second - first == min(3, len(rows) - 1 - first)
        assert np.array_equal(template_image, read_frame_rgb(late.frame_paths[first]))
        assert np.array_equal(search_image, read_frame_rgb(late.frame_paths[second]))
    with pytest.raises(ValueError, match="none of the 1 sequences picked has a frame with a valid box"):
        sequence_frame_pairs([blank], count=3)


@needs_ort
@needs_ov
def test_export_calibrates_openvino_int8_on_a_dataset_and_the_tracker_records_it(synthetic, tmp_path, capsys):
    files, export_dir = synthetic["files"], tmp_path / "onnx"
    base = ["--config", str(files["config"]), "--checkpoint", str(files["good"]), "--out", str(export_dir)]
    calibrate = ["--calibrate", "lasot", "--calibration-root", str(synthetic["data"]), "--calibration-pairs", "4"]
    assert load_tool("export").main([*base, *calibrate]) == 0
    calibration = read_export(export_dir, TINY)["graphs"][INT8_STEP]["calibration"]
    assert calibration["pairs"] == 4 and calibration["source"] == f"lasot at {synthetic['data']}"
    args = ["--config", str(files["config"]), "--checkpoint", str(files["good"]), "--dataset", "lasot", "--root",
            str(synthetic["data"]), "--results", str(tmp_path / "results"), "--device", "cpu", "--no-progress",
            "--backend", "openvino", "--precision", "int8"]
    test_tool = load_tool("test")
    assert test_tool.main([*args, "--run", "calibrated", "--export-dir", str(export_dir)]) == 0
    run = json.loads((tmp_path / "results" / "calibrated" / "lasot" / "run.json").read_text())
    assert run["tracker"]["calibration"] == calibration["source"]
    assert test_tool.main([*args, "--run", "synthetic"]) == 0  # no export: calibrated on synthetic scenes
    run = json.loads((tmp_path / "results" / "synthetic" / "lasot" / "run.json").read_text())
    assert run["tracker"]["calibration"].startswith("synthetic scenes")
    quantized = export_dir / "search_step.int8.onnx"
    quantized.write_bytes(quantized.read_bytes() + b"\0")
    with pytest.raises(ExportError, match="search_step.int8.onnx: changed since the export"):
        read_export(export_dir, TINY)
    capsys.readouterr()
    assert load_tool("export").main([*base, "--calibrate", "lasot", "--calibration-root",
                                     str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--calibrate lasot" in err and "nowhere" in err
    assert load_tool("export").main(base) == 0  # a plain re-export drops the stale int8 graph
    assert INT8_STEP not in read_export(export_dir, TINY)["graphs"] and not quantized.exists()


@needs_ort
@needs_ov
@pytest.mark.parametrize("native_bf16", [False, True])
def test_openvino_binds_each_template_cache_to_the_step(tiny_model, tmp_path, native_bf16):
    """The cache is bound to the step once per template update: the step must follow a change of cache, and come
    back to the first one, in bf16 cache transport (native bf16) as in float32."""
    from mixformerv2.export.backends import OpenVinoBackend
    from mixformerv2.export.cpu import cpu_info

    if native_bf16 and not cpu_info().native_bf16:
        pytest.skip("bf16 transport of the cache runs where bf16 is native (AVX-512_BF16 / AMX); this CPU has none")
    export_onnx(tiny_model, TINY, tmp_path)
    runtime = OpenVinoBackend(tmp_path / "template_encoder.onnx", tmp_path / "search_step.onnx", "int8" if
                              native_bf16 else "fp32", native_bf16=native_bf16)
    x, other = example_inputs(TINY, 0), example_inputs(TINY, 1)
    first = runtime.encode_templates(x["template"], x["online_template"])
    second = runtime.encode_templates(other["template"], other["online_template"])
    boxes = [runtime.forward_search(cache, x["search"]).box_xyxy_norm for cache in (first, second, first)]
    assert torch.equal(boxes[0], boxes[2]) and not torch.equal(boxes[0], boxes[1])
    reference = [_outputs(tiny_model, {**x, "template": t["template"], "online_template": t["online_template"]})
                 for t in (x, other)]
    tolerance = 3e-2 if native_bf16 else 1e-4
    for got, expected in zip(boxes, reference + reference[:1]):
        assert (got - expected.box_xyxy_norm).abs().max() < tolerance


class _RecordingNetwork:
    backend, precision, cached = "stub", "fp32", True

    def __init__(self):
        self.seen = []

    def forward_search(self, cache, search):
        self.seen.append(search.clone())
        return cache


def test_dithered_network_adds_seeded_noise_to_the_search_crop_only():
    inner = _RecordingNetwork()
    search = torch.zeros(1, 3, 4, 4)
    net = DitheredNetwork(inner, 0.01, seed=3)
    assert net.forward_search("cache", search) == "cache" and net.backend == "stub" and net.cached
    net.forward_search("cache", search)
    expected = 0.01 * torch.randn((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.stack(inner.seen), expected, rtol=0, atol=0)  # fresh noise each frame
    assert torch.equal(search, torch.zeros(1, 3, 4, 4))  # the caller's crop is not touched


def test_dithered_repeats_give_a_reproducible_mean_and_leave_the_exact_run_alone(synthetic):
    cfg = Config(model=TINY)

    def run(repeats):
        return compare_backends(cfg, synthetic["files"]["good"], synthetic["sequences"], "lasot",
                                [Variant("torch", "fp32")], repeats=repeats, dither=0.3)["variants"]["torch_fp32"]

    plain, first, again = run(0), run(3), run(3)
    assert "auc_mean" not in plain and first["auc"] == plain["auc"]  # the undisturbed run is the same
    assert first["auc_dithered"] == again["auc_dithered"] and len(first["auc_dithered"]) == 3  # seeded
    assert any(auc != plain["auc"] for auc in first["auc_dithered"])  # the noise moves the boxes
    assert first["auc_mean"] == pytest.approx(sum(first["auc_dithered"]) / 3)
    assert first["auc_mean_delta"] == 0.0 and first["auc_mean_delta_se"] == pytest.approx(
        (2 * first["auc_sd"] ** 2 / 3) ** 0.5)


def test_comparison_table_shows_the_dithered_mean_and_its_standard_error():
    row = {"backend": "torch", "precision": "fp32", "auc": 20.0, "auc_delta": 0.0, "auc_mean": 15.0, "auc_sd": 1.0,
           "auc_mean_delta": 0.0, "auc_mean_delta_se": 0.5, "mean_iou_to_reference": 1.0,
           "lowest_sequence_iou": 1.0, "tracker_ms_p50": 2.0}
    other = {**row, "precision": "int8", "auc": 18.0, "auc_delta": -2.0, "auc_mean": 14.7, "auc_mean_delta": -0.3}
    table = format_comparison({"dataset": "lasot", "sequences": 10, "frames": 1200, "reference": "torch_fp32",
                               "repeats": 8, "dither": 1e-3, "variants": {"torch_fp32": row, "torch_int8": other}})
    lines = table.splitlines()
    assert "8 more runs each with search-crop noise sigma 0.001" in lines[0]
    assert lines[4] == "| torch | fp32 | 20.00 | +0.00 | 15.00 ± 1.00 | (reference) | 1.0000 | 1.0000 | 2.0 |"
    assert lines[5].split(" | ")[4:6] == ["14.70 ± 1.00", "-0.30 ± 0.50"]


@needs_ort
def test_test_tool_records_backend_and_precision_and_reuses_an_export(synthetic, tmp_path):
    files = synthetic["files"]
    export_dir = tmp_path / "onnx"
    assert load_tool("export").main(["--config", str(files["config"]), "--checkpoint", str(files["good"]),
                                     "--out", str(export_dir)]) == 0
    args = ["--config", str(files["config"]), "--checkpoint", str(files["good"]), "--dataset", "lasot", "--root",
            str(synthetic["data"]), "--results", str(tmp_path / "results"), "--device", "cpu", "--no-progress"]
    test_tool = load_tool("test")
    assert test_tool.main([*args, "--run", "ort", "--backend", "onnxruntime", "--export-dir", str(export_dir)]) == 0
    manifest = json.loads((tmp_path / "results" / "ort" / "lasot" / "run.json").read_text())
    assert manifest["tracker"] == {"forward_path": "cached", "backend": "onnxruntime", "precision": "fp32"}
    assert test_tool.main([*args, "--run", "t", "--sequences", synthetic["sequences"][0].name]) == 0
    name = synthetic["sequences"][0].name
    ort_rows = (tmp_path / "results" / "ort" / "lasot" / f"{name}.txt").read_text().splitlines()
    torch_rows = (tmp_path / "results" / "t" / "lasot" / f"{name}.txt").read_text().splitlines()
    assert len(ort_rows) == len(torch_rows) == 16


@needs_ort
def test_tools_reject_a_graph_from_another_version_and_a_missing_backend(synthetic, tmp_path, capsys,
                                                                         monkeypatch):
    files = synthetic["files"]
    export_dir = tmp_path / "onnx"
    assert load_tool("export").main(["--config", str(files["config"]), "--checkpoint", str(files["good"]),
                                     "--out", str(export_dir)]) == 0
    manifest = json.loads((export_dir / "manifest.json").read_text())
    (export_dir / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    capsys.readouterr()
    args = ["--config", str(files["config"]), "--checkpoint", str(files["good"]), "--dataset", "lasot", "--root",
            str(synthetic["data"]), "--results", str(tmp_path / "results"), "--device", "cpu", "--no-progress"]
    test_tool = load_tool("test")
    assert test_tool.main([*args, "--backend", "onnxruntime", "--export-dir", str(export_dir)]) == 2
    assert_one_error_line(capsys.readouterr().err, "another version of the export")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert test_tool.main([*args, "--backend", "openvino", "--run", "ov"]) == 2
    assert_one_error_line(capsys.readouterr().err, "pip install 'mixformerv2[openvino]'")


@needs_ort
def test_demo_runs_on_onnxruntime_with_the_torch_boxes(synthetic, tmp_path):
    seq = synthetic["sequences"][0]
    base = ["--frames", str(Path(seq.frame_paths[0]).parent), "--init-box",
            ",".join(str(v) for v in seq.init_box_xywh), "--config", str(synthetic["files"]["config"]),
            "--checkpoint", str(synthetic["files"]["good"]), "--device", "cpu"]
    demo = load_tool("demo")
    assert demo.main([*base, "--out", str(tmp_path / "t.mp4")]) == 0
    assert demo.main([*base, "--out", str(tmp_path / "o.mp4"), "--backend", "onnxruntime"]) == 0
    rows = {name: [list(map(float, r.split(",")[1:5])) for r in (tmp_path / f"{name}.csv").read_text().split()[1:]]
            for name in ("t", "o")}
    assert len(rows["o"]) == len(seq)
    assert max(abs(a - b) for ra, rb in zip(rows["t"], rows["o"]) for a, b in zip(ra, rb)) <= 0.011  # 2 decimals


def test_tracker_takes_a_backend_and_reports_it(tiny_model):
    runtime = build_backend(tiny_model, TINY, "torch", "int8", CPU)
    tracker = MixFormerV2Tracker(runtime, TrackerSettings(), TINY.template_size, TINY.search_size)
    assert (tracker.backend, tracker.precision, tracker.forward_path) == ("torch", "int8", "cached")
    with pytest.raises(ValueError, match="built with cached=True"):
        MixFormerV2Tracker(runtime, TrackerSettings(), TINY.template_size, TINY.search_size, cached=False)


# ------------------------------------------------------------------------------------------------ GPU
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the fp16 / CUDA-graph step is checked "
                                                         "only where a GPU is lent")
def test_cuda_fp16_compiled_step_matches_fp32(tiny_model):
    cuda = torch.device("cuda")
    reference = TorchBackend(copy.deepcopy(tiny_model), "fp32", cuda)
    fast = build_backend(copy.deepcopy(tiny_model), TINY, "torch", "fp16", cuda, compile_step=True)
    x = {k: v.to(cuda) for k, v in example_inputs(TINY).items()}
    ref = _outputs(reference, x)
    for _ in range(3):  # the CUDA graph is recorded on a later call
        out = _outputs(fast, x)
    assert (out.box_xyxy_norm - ref.box_xyxy_norm).abs().max() < 2e-2



def test_an_fp32_runtime_that_moves_the_boxes_is_refused(tiny_model):
    """A runtime whose kernels compute the graph wrongly (OpenVINO f32 did, on the quickstart student) is an error
    naming the backend, never silently wrong boxes; one that agrees passes."""
    from types import SimpleNamespace

    class Shifted(TorchBackend):
        def forward_search(self, cache, search):
            return SimpleNamespace(box_xyxy_norm=super().forward_search(cache, search).box_xyxy_norm + 0.01)

    check_fp32_parity(TorchBackend(copy.deepcopy(tiny_model)), tiny_model, TINY, "onnxruntime")
    with pytest.raises(BackendError, match=r"^--backend openvino --precision fp32 disagrees with PyTorch .* by 0\.01"):
        check_fp32_parity(Shifted(copy.deepcopy(tiny_model)), tiny_model, TINY, "openvino")
