"""Real benchmark annotations load and score as the official toolkits read them: rows with a non-positive width or
height are invalid frames (warned once per sequence, naming file and line), annotation-only copies (no frames) score,
and every length rule is said out loud."""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import dataset_fixtures as fx
from mixformerv2.data.check import check_dataset
from mixformerv2.data.datasets.lasot import LaSOT
from mixformerv2.data.datasets.tnl2k import TNL2k
from mixformerv2.data.registry import get_dataset
from mixformerv2.evaluation.protocols import eval_sequence, evaluate_tracker, get_rules

TOOLS = Path(__file__).resolve().parents[1] / "tools"

# Predictions for the fixture of fx.make_lasot_real_rows: exact on every valid frame except tiger-6 frame 3, which is
# 10 px to the right (pixel IoU 200/600 = 1/3, centre error 10 px, normalised error 10/20 = 0.5). On the invalid
# frames the tracker outputs some box with a positive size.
LION5_PRED = "5\t5\t10\t10\n6\t5\t10\t10\n1\t1\t1\t1\n8\t5\t10\t10\n"
TIGER6_PRED = "10\t10\t20\t20\n613\t731\t247\t11\n12\t10\t20\t20\n24\t10\t20\t20\n"

# A TNL2K sequence: negative x (valid under the w,h rule), an absent 0,0,0,0 row, negative y, and a negative height.
TNL2K_GT = "-3,4,20,30\n0,0,0,0\n5,-2,20,30\n7,8,20,-5\n"
TNL2K_PRED = "-3,4,20,30\n1,1,5,5\n5,-2,20,30\n7,8,20,5\n"


def _tool(name: str):
    """tools/<name>.py as a module (tools/ is not a package), so that its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_results(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder.parent


def _analyze(tmp_path: Path, *args) -> dict:
    out = tmp_path / "report.json"
    assert _tool("analyze").main([*map(str, args), "--json", str(out)]) == 0
    return json.loads(out.read_text())["trackers"]


def _tnl2k_root(root: Path, images: bool = False) -> Path:
    fx.make_tnl2k(root, images=images)
    fx.write_text(root / fx.TNL2K_NAME / "groundtruth.txt", TNL2K_GT)
    fx.write_text(root / "TNL2K_testing_set.txt", fx.TNL2K_NAME + "\n")
    return root


# ------------------------------------------------------------------------------------------------ reading

def test_real_lasot_rows_are_invalid_frames_warned_once_per_sequence(tmp_path, caplog):
    root = fx.make_lasot_real_rows(tmp_path, images=False)
    reader = LaSOT(root)
    with caplog.at_level(logging.WARNING):
        lion, tiger = reader["lion-5"], reader["tiger-6"]
        reader["lion-5"], list(reader)
    np.testing.assert_array_equal(lion.gt_xywh[2], [1, 1, -1, -1])
    np.testing.assert_array_equal(tiger.gt_xywh[1], [613, 731, 247, -11])
    assert lion.visible.tolist() == [True, True, False, True]
    assert tiger.visible.tolist() == [True, False, True, True]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    lion_file, tiger_file = root / "lion" / "lion-5" / "groundtruth.txt", root / "tiger" / "tiger-6" / "groundtruth.txt"
    assert f"{lion_file}: line 3: width or height not positive (first: 1,1,-1,-1)" in warnings[0]
    assert f"{tiger_file}: line 2: width or height not positive (first: 613,731,247,-11)" in warnings[1]


def test_issue_lines_and_absent_markers(tmp_path):
    fx.make_lasot(tmp_path)
    folder = tmp_path / "airplane" / "airplane-1"
    # 0,0,0,0 on the occluded frame 3 is LaSOT's absent marker; on frame 1, flagged present, it is reported
    fx.write_text(folder / "groundtruth.txt", "0,0,0,0\n5,6,30,0\n0,0,0,0\n9,10,31,-41\n")
    issue, = LaSOT(tmp_path)["airplane-1"].annotation_issues
    assert issue.kind == "invalid_box" and "groundtruth.txt: lines 1, 2, 4:" in issue.message
    fx.make_tnl2k(tmp_path / "tnl2k")
    rows = "1,1,5,5\n" + "0,0,0,0\n" + "".join(f"{i},1,0,5\n" for i in range(7))
    fx.write_text(tmp_path / "tnl2k" / fx.TNL2K_NAME / "groundtruth.txt", rows)
    issue, = TNL2k(tmp_path / "tnl2k")[fx.TNL2K_NAME].annotation_issues  # 9 rows, 3 images: frames unavailable
    assert "lines 3, 4, 5, 6, 7 and 2 more: width or height not positive (first: 0,1,0,5)" in issue.message


@pytest.mark.parametrize("maker, name, sequence, folder, num_rows", [
    (fx.make_lasot_real_rows, "lasot", "tiger-6", "tiger/tiger-6/img", 4),
    (fx.make_tnl2k, "tnl2k", fx.TNL2K_NAME, f"{fx.TNL2K_NAME}/imgs", 3),
    (fx.make_lasot_ext, "lasot_ext", "atv-1", "atv/atv-1/img", 3),
])
def test_annotation_only_roots_read_and_frames_raise_naming_the_folder(tmp_path, maker, name, sequence, folder,
                                                                       num_rows):
    maker(tmp_path, images=False)
    if name == "tnl2k":
        fx.write_text(tmp_path / "TNL2K_testing_set.txt", fx.TNL2K_NAME + "\n")
    seq = get_dataset(name, root=tmp_path)[sequence]
    assert len(seq) == len(seq.gt_xywh) == num_rows  # the frame count comes from the ground truth
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / folder}: frame folder is missing"):
        seq.frame_paths[0]
    with pytest.raises(FileNotFoundError, match="frame folder is missing"):
        next(iter(seq.frame_paths))


def test_table_reader_without_frames_and_with_short_ground_truth(tmp_path, caplog):
    fx.make_uav123(tmp_path)
    fx.write_text(tmp_path / "anno" / "UAV123" / "uav6.txt", fx.box_lines(fx.table_gt(107)))
    with caplog.at_level(logging.WARNING):
        seq = get_dataset("uav123", root=tmp_path)["uav_uav6"]
    assert len(seq) == 107 and seq.gt_xywh.shape == (107, 4)  # frames 108-109 have no row: left out
    message = f"{tmp_path / 'anno' / 'UAV123' / 'uav6.txt'}: has 107 rows but the frame range 1-109 of uav_uav6"
    assert [i.kind for i in seq.annotation_issues] == ["unannotated_frames"]
    assert any(message in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="UAV123/uav6: frame folder is missing"):
        seq.frame_paths[0]


def test_tnl2k_frames_beyond_the_ground_truth_are_left_out_with_a_warning(tmp_path, caplog):
    root = _tnl2k_root(tmp_path, images=True)
    for name in ("00000494.jpg", "00000495.jpg"):  # 5 image files, 4 rows
        fx.write_image(root / fx.TNL2K_NAME / "imgs" / name)
    with caplog.at_level(logging.WARNING):
        seq = TNL2k(root)[fx.TNL2K_NAME]
    assert [p.name for p in seq.frame_paths] == fx.TNL2K_FRAMES + ["00000494.jpg"]
    assert "groundtruth.txt: has 4 rows but" in caplog.text and "imgs (image files) has 5" in caplog.text
    (root / fx.TNL2K_NAME / "imgs" / "00000495.jpg").unlink()
    (root / fx.TNL2K_NAME / "imgs" / "00000494.jpg").unlink()
    (root / fx.TNL2K_NAME / "imgs" / "00000493.jpg").unlink()
    short = TNL2k(root)[fx.TNL2K_NAME]  # 2 image files for 4 rows: scoring works, tracking cannot
    assert len(short) == 4
    with pytest.raises(FileNotFoundError, match="has 2 image files but .*groundtruth.txt has 4 rows"):
        short.frame_paths[0]


# ------------------------------------------------------------------------------------------------ scoring

@pytest.mark.parametrize("protocol, expected", [
    # lion-5: frames 1, 2, 4 perfect (20 of 21 thresholds each), frame 3 invalid and out of view: fails every metric.
    #   success 60/84, precision 3/4, norm precision 3/4 (both protocols: the toolkit removes the absent frame but
    #   keeps it in the denominator).
    # tiger-6 under pytracking: frame 2 invalid but flagged visible: IoU -1 (fail), centre error inf (fail),
    #   normalised error -1 (success); frame 4 IoU 1/3 passes 7 thresholds (0 .. 0.30), error 10 px passes, 0.5 fails.
    #   success (20 + 0 + 20 + 7)/84 = 47/84, precision 3/4, norm precision 3/4.
    # tiger-6 under the MATLAB toolkit: frame 2 (not all of x,y,w,h > 0) has IoU -1, centre and normalised errors -1
    #   (successes): success 47/84, precision 4/4, norm precision 3/4.
    ("pytracking", {"auc": 100 * (60 + 47) / 168, "op50": 62.5, "precision": 75.0, "norm_precision": 75.0}),
    ("toolkit", {"auc": 100 * (60 + 47) / 168, "op50": 62.5, "precision": 87.5, "norm_precision": 75.0}),
])
def test_annotation_only_lasot_with_the_real_rows_scores_hand_computed(tmp_path, protocol, expected):
    root = fx.make_lasot_real_rows(tmp_path / "lasot", images=False)
    results = _write_results(tmp_path / "results" / "T", {"lion-5": LION5_PRED, "tiger-6": TIGER6_PRED})
    scores = _analyze(tmp_path, "--dataset", "lasot", "--root", root, "--results", results, "--trackers", "T",
                      "--protocol", protocol)["T"]
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key


@pytest.mark.parametrize("protocol, expected", [
    # pytracking (w,h rule, no absence flags): frames 1 and 3 perfect (x or y <= 0 is scored normally), frames 2
    #   (0,0,0,0) and 4 (h = -5) invalid: IoU -1, centre error inf, normalised error -1 (a success).
    #   AUC 40/84, precision 2/4, norm precision 4/4.
    ("pytracking", {"auc": 100 * 40 / 84, "op50": 50.0, "precision": 50.0, "norm_precision": 100.0}),
    # MATLAB toolkit: the 0,0,0,0 frame is absent (removed, still in the denominator); frames 1, 3 and 4 each have a
    #   coordinate <= 0: IoU -1 and errors -1 (successes). Success curve all zero, precision 3/4, norm 3/4.
    ("toolkit", {"auc": 0.0, "op50": 0.0, "precision": 75.0, "norm_precision": 75.0}),
])
def test_annotation_only_tnl2k_scores_hand_computed(tmp_path, protocol, expected):
    root = _tnl2k_root(tmp_path / "tnl2k")
    assert not (root / fx.TNL2K_NAME / "imgs").exists()
    results = _write_results(tmp_path / "results" / "T", {fx.TNL2K_NAME: TNL2K_PRED})
    scores = _analyze(tmp_path, "--dataset", "tnl2k", "--root", root, "--results", results, "--trackers", "T",
                      "--protocol", protocol)["T"]
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key


def test_results_longer_than_the_ground_truth_are_cut_with_a_warning_naming_the_file(tmp_path, caplog):
    """LaSOT monkey-17: published raw results have more rows than the ground truth; the toolkits keep the first N."""
    root = fx.make_lasot_real_rows(tmp_path / "lasot", images=False)
    longer = TIGER6_PRED + "1\t1\t1\t1\n2\t2\t2\t2\n"
    results = _write_results(tmp_path / "results" / "T", {"lion-5": LION5_PRED, "tiger-6": longer})
    with caplog.at_level(logging.WARNING):
        scores = _analyze(tmp_path, "--dataset", "lasot", "--root", root, "--results", results, "--trackers", "T")
    assert scores["T"]["auc"] == pytest.approx(100 * 107 / 168)
    cut = [r.getMessage() for r in caplog.records if "result rows" in r.getMessage()]
    assert cut == [f"{results / 'T' / 'tiger-6.txt'}: 6 result rows for 4 ground-truth frames; the rows after "
                   "frame 4 are ignored, as the official analysis does"]


def test_shorter_results_error_for_lasot_and_pad_elsewhere_naming_the_file(tmp_path, caplog, capsys):
    root = fx.make_lasot_real_rows(tmp_path / "lasot", images=False)
    short = "\n".join(TIGER6_PRED.splitlines()[:3]) + "\n"
    results = _write_results(tmp_path / "results" / "T", {"lion-5": LION5_PRED, "tiger-6": short})
    args = ["--dataset", "lasot", "--root", str(root), "--results", str(results), "--trackers", "T"]
    assert _tool("analyze").main(args) == 1
    assert f"tiger-6: {results / 'T' / 'tiger-6.txt'}: 3 predicted rows for 4" in capsys.readouterr().err
    tnl2k = _tnl2k_root(tmp_path / "tnl2k")
    results = _write_results(tmp_path / "results2" / "T", {fx.TNL2K_NAME: TNL2K_PRED.split("7,8")[0]})
    with caplog.at_level(logging.WARNING):
        scores = _analyze(tmp_path, "--dataset", "tnl2k", "--root", tnl2k, "--results", results, "--trackers", "T")
    # the padded frame 4 is invalid in the ground truth anyway: same numbers as the full result
    assert scores["T"]["auc"] == pytest.approx(100 * 40 / 84)
    assert f"{results / 'T' / fx.TNL2K_NAME}.txt: 3 result rows for 4 ground-truth frames; the 1 missing" in caplog.text


def test_absent_flags_of_another_length_are_warned(tmp_path, caplog):
    seq = TNL2k(_tnl2k_root(tmp_path))[fx.TNL2K_NAME]
    with caplog.at_level(logging.WARNING):
        es = eval_sequence(seq, "tnl2k", absent=np.array([0, 1, 0, 0, 1], dtype=bool))
    assert f"{fx.TNL2K_NAME}: 5 absent flags for 4 ground-truth rows" in caplog.text
    np.testing.assert_array_equal(es.absent, [False, True, False, False, True])  # cut to 4 when scored
    # toolkit: frame 2 absent (removed, counted); frames 1, 3, 4 have a coordinate <= 0: centre error -1 succeeds
    summary = evaluate_tracker(get_rules("tnl2k"), [es], [[seq.gt_xywh.clip(min=1)]], "toolkit")
    assert summary["precision"] == pytest.approx(75.0)


# ------------------------------------------------------------------------------------------------ the checker

def test_check_dataset_lists_invalid_rows_as_warnings_and_exits_0(tmp_path, capsys):
    root = fx.make_lasot_real_rows(tmp_path)
    report = check_dataset(LaSOT(root), check_images=True)
    assert report.ok and dict(report.counts) == {"invalid_box": 2}
    check = _tool("check_dataset")
    assert check.main(["--dataset", "lasot", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "invalid_box (warning): 2" in out and "no errors found (warnings only)" in out
    assert "lion-5/groundtruth.txt: line 3:" in out and "tiger-6/groundtruth.txt: line 2:" in out


def test_check_dataset_on_an_annotation_only_copy(tmp_path, capsys):
    root = fx.make_lasot_real_rows(tmp_path, images=False)
    check = _tool("check_dataset")
    assert check.main(["--dataset", "lasot", "--root", str(root), "--annotations-only"]) == 0
    assert "invalid_box (warning): 2" in capsys.readouterr().out
    assert check.main(["--dataset", "lasot", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "missing_frame: 2" in out and f"{root / 'lion' / 'lion-5' / 'img'}: frame folder is missing" in out
