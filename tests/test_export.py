"""ONNX export: checked graphs, manifest round trip, parity with PyTorch, one-line errors for bad input."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mixformerv2.config import load_config
from mixformerv2.export.onnx import (ENCODER, FORMAT_VERSION, STEP, ExportError, example_inputs, export_onnx,
                                     graph_io, read_export, stack_cache, unstack_cache)
from mixformerv2.export.optional import MissingBackendError, import_optional
from mixformerv2.models import build_model, load_checkpoint
from mixformerv2.utils.io import sha256_file
from model_fixtures import TINY, write_tiny_model_files
from tool_loader import load_tool

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny model's files and an export of its checkpoint."""
    root = tmp_path_factory.mktemp("export")
    files = write_tiny_model_files(root)
    model = build_model(TINY)
    load_checkpoint(model, files["good"])
    manifest = export_onnx(model, TINY, root / "onnx", checkpoint=files["good"])
    return {"root": root, "files": files, "model": model.eval(), "dir": root / "onnx", "manifest": manifest}


def test_cache_stacking_round_trip():
    model = build_model(TINY).eval()
    x = example_inputs(TINY)
    with torch.inference_mode():
        cache = model.encode_templates(x["template"], x["online_template"])
        stacked = stack_cache(cache)
        # (depth, 2, B, heads, (1 + 1) * (32 / 16)^2 tokens, 32 / 2)
        assert stacked.shape == (2, 2, 1, 2, 8, 16)
        again = unstack_cache(stacked)
        for (k, v), (k2, v2) in zip(cache.kv, again.kv):
            assert torch.equal(k, k2) and torch.equal(v, v2)
        assert torch.equal(model.forward_search(again, x["search"]).box_xyxy_norm,
                          model.forward_search(cache, x["search"]).box_xyxy_norm)


def test_export_writes_checked_graphs_and_a_manifest_that_reads_back(exported):
    manifest, folder = exported["manifest"], exported["dir"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "search_step.onnx", "template_encoder.onnx"]
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["format_version"] == FORMAT_VERSION and manifest["opset"] == 17
    assert manifest["checkpoint_sha256"] == sha256_file(exported["files"]["good"])
    assert manifest["model"]["embed_dim"] == 32
    for name in (ENCODER, STEP):
        proto = onnx.load(folder / manifest["graphs"][name]["file"])
        onnx.checker.check_model(proto, full_check=True)
        assert manifest["graphs"][name]["nodes"] == len(proto.graph.node)
        assert manifest["graphs"][name]["nodes"] <= manifest["graphs"][name]["nodes_exported"]
    step = manifest["graphs"][STEP]
    assert [o["name"] for o in step["outputs"]] == ["box_xyxy_norm", "score_logit", "side_logits"]
    assert step["outputs"][2]["shape"] == [1, 4, 8] and step["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert read_export(folder, TINY, sha256_file(exported["files"]["good"])) == manifest


def test_onnxruntime_agrees_with_pytorch_on_boxes_and_scores(exported):
    from mixformerv2.export.backends import OnnxRuntimeBackend

    parity = exported["manifest"]["parity"]["max_abs_diff"]
    assert parity["box_xyxy_norm"] <= 1e-4 and parity["score_logit"] <= 1e-4
    folder, model = exported["dir"], exported["model"]
    runtime = OnnxRuntimeBackend(folder / "template_encoder.onnx", folder / "search_step.onnx")
    for seed in range(3):
        x = example_inputs(TINY, seed=10 + seed)
        with torch.inference_mode():
            ref = model.forward_search(model.encode_templates(x["template"], x["online_template"]), x["search"])
        out = runtime.forward_search(runtime.encode_templates(x["template"], x["online_template"]), x["search"])
        assert (out.box_xyxy_norm - ref.box_xyxy_norm).abs().max() <= 1e-4
        assert (out.score_logit - ref.score_logit).abs().max() <= 1e-4
        assert (out.side_logits - ref.side_logits).abs().max() <= 1e-4


def _copy_export(exported, tmp_path) -> Path:
    target = tmp_path / "copy"
    target.mkdir()
    for path in exported["dir"].iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_read_export_refuses_other_versions_files_models_and_checkpoints(exported, tmp_path):
    folder = _copy_export(exported, tmp_path)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    with pytest.raises(ExportError, match="no manifest"):
        read_export(tmp_path)
    manifest_path.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ExportError, match=f"another version of the export .*format_version {FORMAT_VERSION + 1}"):
        read_export(folder)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="another model config: model.depth: 2 in the export, 3 here"):
        read_export(folder, replace(TINY, depth=3))
    with pytest.raises(ExportError, match="another checkpoint"):
        read_export(folder, TINY, "0" * 64)
    renamed = {**manifest, "graphs": {**manifest["graphs"], STEP: {**manifest["graphs"][STEP], "outputs": []}}}
    manifest_path.write_text(json.dumps(renamed))
    with pytest.raises(ExportError, match="search_step: inputs/outputs differ"):
        read_export(folder)
    manifest_path.write_text(json.dumps(manifest))
    with open(folder / "search_step.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match="search_step.onnx: changed since the export"):
        read_export(folder)


def test_graph_io_matches_the_b_and_s_configs():
    for name, kv_tokens in (("b", 2 * 8 * 8), ("s", 2 * 7 * 7)):
        cfg = load_config(REPO / "configs" / f"mixformerv2_{name}.yaml").model
        io = graph_io(cfg)
        assert io[ENCODER]["outputs"][0]["shape"] == [cfg.depth, 2, 1, 12, kv_tokens, 64]
        assert io[STEP]["outputs"][-1]["shape"] == [1, 4, 96]


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingBackendError, match=r"openvino is not installed.*pip install 'mixformerv2\[openvino\]'"):
        import_optional("openvino")


def test_export_tool_writes_the_graphs_and_refuses_a_checkpoint_that_does_not_fit(exported, tmp_path, capsys):
    tool = load_tool("export")
    files = exported["files"]
    assert tool.main(["--config", str(files["config"]), "--checkpoint", str(files["good"]),
                      "--out", str(tmp_path / "ok")]) == 0
    parity = json.loads(capsys.readouterr().out)
    assert parity["max_abs_diff"]["box_xyxy_norm"] <= 1e-4
    assert read_export(tmp_path / "ok", TINY)["checkpoint"] == str(files["good"])
    assert tool.main(["--config", str(files["config"]), "--checkpoint", str(files["deeper"]),
                      "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "deeper.pth.tar" in err and "model.depth" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("variant", ["s", "b"])
def test_parity_of_the_real_model_sizes(variant, tmp_path):
    """Random-weight MixFormerV2-S and -B (the slow test: B takes about half a minute on two cores)."""
    cfg = load_config(REPO / "configs" / f"mixformerv2_{variant}.yaml").model
    torch.manual_seed(0)
    manifest = export_onnx(build_model(cfg), cfg, tmp_path)
    diffs = manifest["parity"]["max_abs_diff"]
    assert diffs["box_xyxy_norm"] <= 1e-4 and diffs["score_logit"] <= 1e-4
    assert np.isfinite(list(diffs.values())).all()
