"""Box rules: our full-precision result files are scored and packed truncated toward zero, as the official pipeline
saved them (``astype(int)``); raw results of other trackers as stored; flags for the other way round."""
from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mixformerv2.config import Config
from mixformerv2.evaluation.packing import Expectation, pack
from mixformerv2.evaluation.results import (AS_STORED, TRUNCATE_INT, BoxPolicy, ResultFileError, apply_box_rule,
                                            box_rule_for_folder, box_rules, collect_results)
from mixformerv2.tracking.runner import SequenceResult, make_manifest, write_manifest, write_sequence_result

REPO = Path(__file__).resolve().parents[1]
# Coordinates that rounding to 2 decimals would move up by a pixel before truncation (13, 4), and a negative x
# that floor() would move down (-2).
BOXES = np.array([[12.996, 3.9999999, 20.5, 30.7], [-1.2, 0.5, 10.0, 10.0]])
TRUNCATED = np.array([[12.0, 3.0, 20.0, 30.0], [-1.0, 0.0, 10.0, 10.0]])


def write_ours(folder: Path, name: str, boxes: np.ndarray) -> None:
    """A sequence result and run.json exactly as the runner writes them."""
    manifest = make_manifest(Config(), None, "lasot", checkpoint_sha256="0" * 64)
    write_manifest(folder, {**manifest, "tracker": {"forward_path": "cached"}})
    write_sequence_result(folder, name, SequenceResult(boxes, np.full(len(boxes), 0.01), np.full(len(boxes), 0.5)))


def write_raw(folder: Path, name: str, boxes: np.ndarray) -> None:
    """Another tracker's result file: the same numbers, no run.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("".join("\t".join(repr(float(v)) for v in row) + "\n" for row in boxes))


def test_apply_box_rule():
    np.testing.assert_array_equal(apply_box_rule(BOXES, TRUNCATE_INT), TRUNCATED)
    np.testing.assert_array_equal(apply_box_rule(BOXES, AS_STORED), BOXES)
    with pytest.raises(ValueError, match="round"):
        apply_box_rule(BOXES, "round")


def test_ours_truncated_by_default_full_precision_on_request_raw_as_stored(tmp_path):
    write_ours(tmp_path / "ours" / "lasot", "seq", BOXES)
    write_raw(tmp_path / "theirs", "seq", BOXES)
    trackers = ["ours", "theirs"]

    found, problems = collect_results(tmp_path, trackers, "lasot", ["seq"])
    assert problems == {"ours": {}, "theirs": {}}
    np.testing.assert_array_equal(found["ours"]["seq"][0], TRUNCATED)  # 12 and 3, never 13 and 4; -1, never -2
    np.testing.assert_array_equal(found["theirs"]["seq"][0], BOXES)

    rules = box_rules(tmp_path, trackers, "lasot", BoxPolicy(full_precision=True))
    assert (rules["ours"].rule, rules["theirs"].rule) == (AS_STORED, AS_STORED)
    found, _ = collect_results(tmp_path, trackers, "lasot", ["seq"], rules)
    np.testing.assert_array_equal(found["ours"]["seq"][0], BOXES)  # every digit kept in the file

    rules = box_rules(tmp_path, trackers, "lasot", BoxPolicy(truncate_raw=True))
    assert (rules["ours"].rule, rules["theirs"].rule) == (TRUNCATE_INT, TRUNCATE_INT)
    found, _ = collect_results(tmp_path, trackers, "lasot", ["seq"], rules)
    np.testing.assert_array_equal(found["theirs"]["seq"][0], TRUNCATED)


def test_run_json_records_the_rule_and_a_bad_rule_is_named(tmp_path):
    write_ours(tmp_path, "seq", BOXES)
    assert json.loads((tmp_path / "run.json").read_text())["box_rule"] == "truncate_int"
    assert box_rule_for_folder(tmp_path).rule == TRUNCATE_INT
    (tmp_path / "run.json").write_text('{"box_rule": "round"}')
    with pytest.raises(ResultFileError, match=r"run\.json: box_rule: unknown rule 'round'"):
        box_rule_for_folder(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2")
    with pytest.raises(ResultFileError, match=r"run\.json: not valid JSON"):
        box_rule_for_folder(tmp_path)


def test_packing_truncates_ours_and_keeps_raw(tmp_path):
    names = ["abc_1"]
    expectation = Expectation(1, tuple(names), {"abc_1": 2})
    write_ours(tmp_path / "ours", "abc_1", BOXES)
    write_raw(tmp_path / "theirs", "abc_1", BOXES)

    def packed(folder, **policy):
        out = tmp_path / f"{folder}.zip"
        assert pack("trackingnet", tmp_path / folder, out, expectation, policy=BoxPolicy(**policy)) == []
        with zipfile.ZipFile(out) as zf:
            return zf.read("abc_1.txt").decode()

    assert packed("ours") == "12,3,20,30\n-1,0,10,10\n"
    assert packed("ours", full_precision=True) == "12.996,3.9999999,20.5,30.7\n-1.2,0.5,10.0,10.0\n"
    assert packed("theirs") == "12.996,3.9999999,20.5,30.7\n-1.2,0.5,10.0,10.0\n"


# --------------------------------------------------------------------------------------------- tools/analyze.py
def _lasot_root(root: Path) -> Path:
    """One LaSOT sequence (annotations only), the target fully visible at [10, 10, 10, 10] in both frames."""
    folder = root / "cat" / "cat-1"
    folder.mkdir(parents=True)
    (folder / "groundtruth.txt").write_text("10,10,10,10\n10,10,10,10\n")
    (folder / "full_occlusion.txt").write_text("0,0")
    (folder / "out_of_view.txt").write_text("0,0")
    (folder / "nlp.txt").write_text("a cat\n")
    (root / "testing_set.txt").write_text("cat-1\n")
    return root


def test_analyze_scores_ours_truncated_and_records_the_rule(tmp_path):
    """Frame 1 predicted at [10.9999, 10, 10.9999, 10]. Truncated it is the ground truth (IoU 1); as stored its IoU is
    9.0001 * 10 / (109.999 + 100 - 90.001) = 0.75002. Frame 0 is set to the ground truth (IoU 1). IoU 1 passes 20
    of the 21 thresholds 0, 0.05, ..., 1, IoU 0.75002 passes 16, so AUC = 40/42 truncated, 36/42 as stored."""
    root = _lasot_root(tmp_path / "lasot")
    pred = np.array([[10.0, 10.0, 10.0, 10.0], [10.9999, 10.0, 10.9999, 10.0]])
    results = tmp_path / "results"
    write_ours(results / "ours" / "lasot", "cat-1", pred)
    write_raw(results / "theirs", "cat-1", pred)

    spec = importlib.util.spec_from_file_location("tool_analyze", REPO / "tools" / "analyze.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def analyze(*flags):
        report = tmp_path / "report.json"
        assert tool.main(["--dataset", "lasot", "--root", str(root), "--results", str(results), "--trackers", "ours",
                          "theirs", "--json", str(report), *flags]) == 0
        return json.loads(report.read_text())

    default = analyze()
    assert default["trackers"]["ours"]["auc"] == pytest.approx(100 * 40 / 42)
    assert default["trackers"]["theirs"]["auc"] == pytest.approx(100 * 36 / 42)
    assert default["box_rules"]["ours"]["box_rule"] == "truncate_int"
    assert default["box_rules"]["theirs"]["box_rule"] == "as_stored"

    full = analyze("--full-precision")
    assert full["trackers"]["ours"]["auc"] == pytest.approx(100 * 36 / 42)
    assert full["box_rules"]["ours"]["box_rule"] == "as_stored"

    forced = analyze("--truncate-int")
    assert forced["trackers"]["theirs"]["auc"] == pytest.approx(100 * 40 / 42)
    assert forced["box_rules"]["theirs"]["box_rule"] == "truncate_int"
