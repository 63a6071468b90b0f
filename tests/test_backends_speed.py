"""The speed table: rows computed from interleaved times (hand-checked), the JSON layout of the issue, Markdown, the
profile tool's --table mode."""
import json

import pytest

from mixformerv2.profiling import SPEED_VARIANTS, _rows, speed_markdown, speed_table
from model_fixtures import TINY, write_tiny_model_files
from tool_loader import load_tool




def test_rows_from_times_by_hand():
    times = {"torch_fp32_full": [10.0, 20.0, 30.0, 40.0], "torch_fp32_full/tracker": [20.0] * 4,
             "onnxruntime_int8": [5.0] * 4, "onnxruntime_int8/tracker": [8.0, 8.0, 12.0, 12.0]}
    variants = {k: SPEED_VARIANTS[k] for k in ("torch_fp32_full", "onnxruntime_int8")}
    rows = _rows(times, variants, gflops_full=5.0, gflops_cached=2.0, peak={"fp32": 100.0, "bf16": 400.0})
    full, int8 = rows["torch_fp32_full"], rows["onnxruntime_int8"]
    assert full["ms_p50"] == 25.0 and full["ms_p95"] == pytest.approx(38.5)  # numpy's linear interpolation
    assert full["fps"] == 50.0 and full["speedup_vs_full"] == 1.0 and full["path"] == "full"
    assert full["achieved_gflops"] == pytest.approx(200.0) and full["of_fp32_peak"] == pytest.approx(2.0)
    assert int8["speedup_vs_full"] == 5.0 and int8["tracker_ms_p50"] == 10.0
    assert int8["tracker_speedup_vs_full"] == 2.0 and int8["fps"] == 100.0
    assert int8["gflops"] == 2.0 and int8["achieved_gflops"] == pytest.approx(400.0)
    assert int8["of_bf16_peak"] == pytest.approx(1.0)


def test_speed_table_layout_and_markdown():
    variants = ["torch_fp32_full", "torch_fp32_cached", "onnxruntime_fp32", "openvino_fp32"]
    result = speed_table({"T": TINY}, variants, runs=2, warmup=1, block=1)
    machine = result["machine"]
    assert machine["threads"] >= 1 and machine["versions"]["torch"] and isinstance(machine["flags"], list)
    entry = result["models"]["T"]
    measured = set(entry["backends"]) | set(entry["skipped"])
    assert measured == set(variants)
    for row in entry["backends"].values():
        assert {"ms_p50", "ms_p95", "tracker_ms_p50", "fps"} <= set(row)
        assert row["ms_p95"] >= row["ms_p50"] > 0 and row["tracker_ms_p50"] > 0
    assert entry["backends"]["torch_fp32_full"]["speedup_vs_full"] == 1.0
    assert 0 < entry["gflops"]["cached"] < entry["gflops"]["full"]
    assert entry["peak_gflops"]["fp32"] > 0
    text = speed_markdown(result, "python tools/profile_model.py --table")
    assert text.startswith("Command: `python tools/profile_model.py --table`")
    assert "**MixFormerV2-T**" in text and machine["cpu"] in text
    assert f"matmul peak {entry['peak_gflops']['fp32']:.0f} GFLOP/s fp32" in text and "{" not in text
    assert text.count("| torch | fp32 |") == 2
    assert f"auto: {entry['auto']['backend']} {entry['auto']['precision']} (" in text
    with pytest.raises(ValueError, match="not measured on cpu"):
        speed_table({"T": TINY}, ["torch_fp16_compiled"])


def test_profile_tool_table_mode(tmp_path, capsys):
    files = write_tiny_model_files(tmp_path)
    tool = load_tool("profile_model")
    out = tmp_path / "speed.json"
    assert tool.main(["--table", "--device", "cpu", "--models", f"T={files['config']}", "--variants",
                      "torch_fp32_full", "torch_fp32_cached", "--runs", "1", "--json", str(out),
                      "--markdown", str(tmp_path / "speed.md")]) == 0
    result = json.loads(out.read_text())
    assert set(result["models"]["T"]["backends"]) == {"torch_fp32_full", "torch_fp32_cached"}
    assert "| torch | fp32 | cached |" in (tmp_path / "speed.md").read_text()
    capsys.readouterr()
    assert tool.main(["--table", "--device", "cpu", "--variants", "torch_fp16_compiled", "--runs", "1"]) == 2
    assert "profile_model.py: error: --variants torch_fp16_compiled: not measured on cpu" in capsys.readouterr().err
    assert tool.main(["--table", "--device", "cpu", "--models", "S", "--runs", "1"]) == 2
    assert "expected NAME=CONFIG.yaml" in capsys.readouterr().err
