"""The quickstart report: hand-computed scores in summary.json and report.md, units in the keys, plots beside the
report, agreement with tools/analyze.py, the acceptance checks, and the speed numbers of profile_trackers."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from mixformerv2.config import Config
from mixformerv2.data.registry import get_dataset
from mixformerv2.evaluation.metrics import EvaluationError
from mixformerv2.evaluation.quickstart_report import (ReportRow, check_acceptance, format_checks,
                                                     write_quickstart_report)
from mixformerv2.models import build_model
from mixformerv2.profiling import count_flops, profile_trackers
from mixformerv2.tracking.baselines import HOLD_FIRST_BOX, run_baseline
from model_fixtures import TINY
from quickstart_fixtures import (EXACT_AUC, GT, HOLD_AUC, HOLD_NORM_PRECISION, STUDENT, STUDENT_AUC,
                                 STUDENT_NORM_PRECISION, make_cube_lasot, write_run)
from tool_loader import load_tool

ROWS = [ReportRow("teacher (MixViT)", "teacher", "teacher", wall_time_s=125.0, note="dense teacher"),
        ReportRow("final student", "final", "final", wall_time_s=61.5),
        ReportRow("hold first box", HOLD_FIRST_BOX, "hold_first_box", note="baseline")]
# profile_trackers-shaped speed numbers, made up
SPEED = {"machine": {"cpu": "Test CPU 9000", "flags": ["avx2", "fma"], "logical_cpus": 2,
                     "versions": {"torch": "2.x"}},
         "settings": {"device": "cpu", "threads": 2, "runs": 30, "frame_wh": [640, 480], "dataset": "lasot"},
         "models": {"teacher (MixViT)": {"params_m": 1.5, "gflops_per_frame": 0.4, "gmacs_per_frame": 0.2,
                                         "ms_per_frame": 8.0, "ms_per_frame_p95": 9.0, "forward_path": "full"},
                    "final student": {"params_m": 0.5, "gflops_per_frame": 0.1, "gmacs_per_frame": 0.05,
                                      "ms_per_frame": 2.0, "ms_per_frame_p95": 2.5, "forward_path": "cached"}}}


@pytest.fixture()
def results(tmp_path):
    root = make_cube_lasot(tmp_path / "lasot")
    results = tmp_path / "results"
    write_run(results, "teacher", GT)
    write_run(results, "final", STUDENT)
    run_baseline(list(get_dataset("lasot", root=root)), "lasot", results)
    return root, results


def test_report_scores_units_and_files(results, tmp_path):
    root, results_root = results
    out = tmp_path / "quickstart"
    summary = write_quickstart_report(ROWS, "lasot", results_root, out, speed=SPEED, root=root,
                                      steps={"generate data": 59.96, "train teacher": 125.0, "track": 119.7})
    rows = summary["rows"]
    assert list(rows) == [r.name for r in ROWS]
    for name, auc, norm in (("teacher (MixViT)", EXACT_AUC, 100.0), ("final student", STUDENT_AUC,
                                                                      STUDENT_NORM_PRECISION),
                            ("hold first box", HOLD_AUC, HOLD_NORM_PRECISION)):
        assert rows[name]["auc_pct"] == pytest.approx(auc)
        assert rows[name]["norm_precision_pct"] == pytest.approx(norm)
        assert rows[name]["precision_pct"] == pytest.approx(100.0)
    assert rows["final student"]["ms_per_frame"] == 2.0 and rows["final student"]["gmacs_per_frame"] == 0.05
    assert rows["hold first box"]["ms_per_frame"] is None and rows["hold first box"]["params_m"] is None
    assert rows["teacher (MixViT)"]["train_wall_time_s"] == 125.0
    assert rows["final student"]["box_rule"]["box_rule"] == "truncate_int"

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(rows))
    assert on_disk["num_sequences"] == 2 and on_disk["total_wall_time_s"] == pytest.approx(304.66)
    assert on_disk["steps_wall_time_s"] == {"generate data": 59.96, "train teacher": 125.0, "track": 119.7}
    assert on_disk["machine"]["cpu"] == "Test CPU 9000" and on_disk["speed_settings"]["threads"] == 2
    for key in ("auc_pct", "norm_precision_pct", "precision_pct", "params_m", "gflops_per_frame",
                "gmacs_per_frame", "ms_per_frame", "train_wall_time_s"):
        assert key in on_disk["units"] and key in rows["final student"]

    report = (out / "report.md").read_text()
    assert "| final student | 88.1 | 83.3 | 100.0 | 0.500 | 0.100 | 2.0 | 1 min 02 s |" in report
    assert "| hold first box | 84.9 | 83.3 | 100.0 | - | - | - | - | baseline |" in report
    assert "Test CPU 9000 (avx2, fma)" in report and "2 torch thread(s)" in report
    for plot in ("lasot_success.png", "lasot_precision.png"):
        assert f"]({plot})" in report
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for step in ("| generate data | 1 min 00 s |", "| train teacher | 2 min 05 s |", "| track | 2 min 00 s |",
                 "| total | 5 min 05 s |"):
        assert step in report
    assert "FAIL final beats hold-the-first-box by >= 15 AUC points" in report


def test_report_agrees_with_analyze(results, tmp_path):
    root, results_root = results
    summary = write_quickstart_report(ROWS, "lasot", results_root, tmp_path / "q", root=root)
    analyze = tmp_path / "analyze.json"
    assert load_tool("analyze").main(["--dataset", "lasot", "--root", str(root), "--results", str(results_root),
                                      "--trackers", *[r.run for r in ROWS], "--json", str(analyze)]) == 0
    expected = json.loads(analyze.read_text())["trackers"]
    for row in ROWS:
        got = summary["rows"][row.name]
        assert (got["auc_pct"], got["precision_pct"], got["norm_precision_pct"]) == \
            (expected[row.run]["auc"], expected[row.run]["precision"], expected[row.run]["norm_precision"])
    assert summary["machine"] is None and "Speed not measured." in (tmp_path / "q" / "report.md").read_text()


def test_report_refuses_a_row_with_missing_results(results, tmp_path):
    root, results_root = results
    (results_root / "final" / "lasot" / "cube-2.txt").unlink()
    with pytest.raises(EvaluationError, match=r"final: 1 of 2 lasot sequences .*cube-2"):
        write_quickstart_report(ROWS, "lasot", results_root, tmp_path / "q", root=root)
    assert not (tmp_path / "q" / "summary.json").exists()


def test_row_roles_are_checked():
    with pytest.raises(ValueError, match="'student'.*unknown role 'teachr'"):
        ReportRow("student", "s", "teachr")


# -------------------------------------------------------------------------------------------------- checker
def _summary(final_auc=60.0, teacher_auc=64.0, hold_auc=40.0, final_ms=2.0, teacher_ms=5.0) -> dict:
    return {"rows": {"teacher": {"role": "teacher", "auc_pct": teacher_auc, "ms_per_frame": teacher_ms},
                     "final": {"role": "final", "auc_pct": final_auc, "ms_per_frame": final_ms},
                     "hold": {"role": "hold_first_box", "auc_pct": hold_auc, "ms_per_frame": None}}}


def _verdicts(summary) -> list[bool]:
    return [check.passed for check in check_acceptance(summary)]


def test_checker_passes_and_reports_the_numbers():
    checks = check_acceptance(_summary())
    assert [c.passed for c in checks] == [True, True, True]
    text = format_checks(checks).splitlines()
    assert text[0] == "PASS final AUC >= 90 % of the teacher's: final 60.00 vs teacher 64.00: 93.8 %"
    assert text[1] == "PASS final beats hold-the-first-box by >= 15 AUC points: final 60.00 vs hold 40.00: " \
                      "+20.00 points"
    assert text[2] == "PASS final runs faster per frame than the teacher: final 2.00 ms/frame vs teacher 5.00 " \
                      "ms/frame: 2.50x"


@pytest.mark.parametrize("change, verdicts", [
    ({"final_auc": 57.5}, [False, True, True]),     # 89.8 % of 64
    ({"final_auc": 57.6}, [True, True, True]),      # exactly 90 %
    ({"hold_auc": 45.01}, [True, False, True]),     # 14.99 points
    ({"final_ms": 5.0}, [True, True, False]),       # as fast is not faster
])
def test_checker_verdicts_at_the_boundaries(change, verdicts):
    assert _verdicts(_summary(**change)) == verdicts


def test_checker_fails_missing_rows_and_numbers(tmp_path):
    summary = _summary(final_ms=None)
    del summary["rows"]["hold"]
    checks = check_acceptance(summary)
    assert [c.passed for c in checks] == [True, False, False]
    assert checks[1].detail == "no row with role 'hold_first_box'"
    assert checks[2].detail == "no ms_per_frame for final"
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_summary(teacher_auc=80.0)))
    assert _verdicts(path) == [False, True, True]


# ------------------------------------------------------------------------------------------------ profiling
def test_profile_trackers_counts_parameters_and_times_the_step():
    teacher = Config(model=replace(TINY, name="mixvit", head_type="corner_up", head_channels=16, score_head=False))
    speed = profile_trackers({"student": (Config(model=TINY), None), "teacher": (teacher, None)}, runs=5,
                             threads=1)
    student = speed["models"]["student"]
    assert student["params_m"] == pytest.approx(sum(p.numel() for p in build_model(TINY).parameters()) / 1e6)
    assert student["forward_path"] == "cached" and speed["models"]["teacher"]["forward_path"] == "full"
    assert student["gmacs_per_frame"] == pytest.approx(student["gflops_per_frame"] / 2)
    # the cached search step skips the template tokens' own attention and MLP: less than the full forward
    model = build_model(TINY).eval()
    t, x = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        full_gflops = count_flops(lambda: model(t, t, x)) / 1e9
    assert 0 < student["gflops_per_frame"] < full_gflops
    assert all(speed["models"][m]["ms_per_frame"] > 0 for m in ("student", "teacher"))
    assert speed["settings"]["threads"] == 1 and "cpu" in speed["machine"]
