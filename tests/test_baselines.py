"""Baselines: hold-the-first-box written in the runner's layout and scored by analyze like any run; the overrides
that switch the online template update off."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mixformerv2.config import TestConfig as TrackerSettings
from mixformerv2.config import load_config
from mixformerv2.data.registry import get_dataset
from mixformerv2.evaluation.results import read_result_file
from mixformerv2.tracking.baselines import (HOLD_FIRST_BOX, NO_UPDATE_INTERVAL, no_online_update_overrides,
                                            run_baseline)
from mixformerv2.tracking.runner import RunMismatchError
from mixformerv2.tracking.tracker import MixFormerV2Tracker
from quickstart_fixtures import GT, HOLD_AUC, HOLD_NORM_PRECISION, make_cube_lasot, write_run
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cube(tmp_path):
    root = make_cube_lasot(tmp_path / "lasot")
    return root, list(get_dataset("lasot", root=root))


def test_hold_first_box_files_manifest_and_resume(cube, tmp_path):
    root, sequences = cube
    summary = run_baseline(sequences, "lasot", tmp_path / "results")
    folder = tmp_path / "results" / HOLD_FIRST_BOX / "lasot"
    assert summary.results_dir == folder and sorted(summary.done) == ["cube-1", "cube-2"]
    for name, gt in GT.items():
        np.testing.assert_array_equal(read_result_file(folder / f"{name}.txt"), np.tile(gt[0], (len(gt), 1)))
        assert (folder / f"{name}_time.txt").read_text().split() == ["0.000000"] * len(gt)
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["baseline"] == HOLD_FIRST_BOX and manifest["box_rule"] == "truncate_int"
    assert manifest["checkpoint"] is None and manifest["dataset"] == "lasot"

    again = run_baseline(sequences, "lasot", tmp_path / "results")
    assert again.done == [] and sorted(again.skipped) == ["cube-1", "cube-2"]


def test_hold_first_box_refuses_a_folder_of_a_model_run(cube, tmp_path):
    _, sequences = cube
    write_run(tmp_path / "results", HOLD_FIRST_BOX, {"cube-1": GT["cube-1"]})
    with pytest.raises(RunMismatchError, match="different checkpoint or settings"):
        run_baseline(sequences, "lasot", tmp_path / "results")


def test_analyze_scores_the_baseline_as_worked_out_by_hand(cube, tmp_path):
    root, sequences = cube
    run_baseline(sequences, "lasot", tmp_path / "results")
    report = tmp_path / "report.json"
    code = load_tool("analyze").main(["--dataset", "lasot", "--root", str(root), "--results",
                                      str(tmp_path / "results"), "--trackers", HOLD_FIRST_BOX, "--json", str(report)])
    assert code == 0
    scores = json.loads(report.read_text())["trackers"][HOLD_FIRST_BOX]
    assert scores["auc"] == pytest.approx(HOLD_AUC)
    assert scores["precision"] == pytest.approx(100.0)
    assert scores["norm_precision"] == pytest.approx(HOLD_NORM_PRECISION)


@pytest.mark.parametrize("config", ["configs/mixformerv2_b.yaml", "configs/quickstart/stage1.yaml"])
def test_no_online_update_overrides_win_over_a_benchmark_entry(config):
    # mixformerv2_b.yaml sets test.datasets.lasot.update_interval=200, which a plain test.update_interval loses to
    cfg = load_config(REPO / config, no_online_update_overrides("LaSOT"))
    assert cfg.test.for_dataset("lasot").update_interval == NO_UPDATE_INTERVAL


@dataclass
class _Out:
    box_xyxy_norm: torch.Tensor
    score_logit: torch.Tensor


class _ConfidentNetwork(torch.nn.Module):
    """Predicts the centred, same-size box with score 0.99 every frame: the online rule would swap templates."""

    def forward(self, template, online, search):
        return _Out(torch.tensor([[0.375, 0.375, 0.625, 0.625]]), torch.tensor([4.6]))


def test_without_online_update_the_template_set_never_changes():
    frame = np.full((120, 160, 3), 100, dtype=np.uint8)

    def template_sets(update_interval: int) -> int:
        settings = replace(TrackerSettings(), search_factor=4.0, update_interval=update_interval)
        tracker = MixFormerV2Tracker(_ConfidentNetwork(), settings, 32, 64, "cpu", cached=False)
        tracker.initialize(frame, [70.0, 50.0, 20.0, 20.0])
        for _ in range(30):
            tracker.track(frame)
        return tracker.num_template_sets

    assert template_sets(10) == 4  # the initial set, then a new online template at frames 10, 20 and 30
    assert template_sets(NO_UPDATE_INTERVAL) == 1


def test_baseline_tool_writes_results_and_names_a_bad_dataset(cube, tmp_path, capsys):
    root, _ = cube
    tool = load_tool("baseline")
    assert tool.main(["--dataset", "lasot", "--root", str(root), "--results", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / HOLD_FIRST_BOX / "lasot" / "cube-2.txt").read_text() == "20.0,20.0,10.0,10.0\n" * 2
    assert tool.main(["--dataset", "lasott", "--root", str(root), "--results", str(tmp_path / "r")]) == 2
    assert "unknown dataset 'lasott'" in capsys.readouterr().err
