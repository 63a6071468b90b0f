"""The dataset checker finds each planted problem and exits 1; a clean copy exits 0."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

import dataset_fixtures as fx
from mixformerv2.data.check import check_dataset
from mixformerv2.data.datasets.got10k import GOT10k
from mixformerv2.data.datasets.lasot import LaSOT
from mixformerv2.data.datasets.trackingnet import TrackingNet

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_dataset.py"
AIRPLANE = Path("airplane") / "airplane-1"


def run_tool(*args: str) -> int:
    """tools/check_dataset.py run in this process; returns its exit status."""
    return runpy.run_path(str(TOOL))["main"](list(args))


def assert_found(report, kind: str, *expected: tuple[str, str]) -> None:
    """The problems of ``kind`` are exactly ``expected`` (sequence, text its message contains), in order."""
    problems = report.examples[kind]
    assert [p.sequence for p in problems] == [sequence for sequence, _ in expected], problems
    for problem, (_, text) in zip(problems, expected):
        assert text in problem.message, problem


def test_clean_copy_passes(tmp_path):
    report = check_dataset(LaSOT(fx.make_lasot(tmp_path)), check_images=True)
    assert report.ok and report.num_sequences == 2 and report.num_frames == 7
    assert dict(report.counts) == {} and dict(report.examples) == {}


def test_missing_frame(tmp_path):
    fx.make_lasot(tmp_path)
    (tmp_path / AIRPLANE / "img" / "00000003.jpg").unlink()
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"missing_frame": 1}
    assert_found(report, "missing_frame", ("airplane-1", "00000003.jpg: frame 2 is missing"))


def test_corrupt_frame_needs_decoding(tmp_path):
    fx.make_lasot(tmp_path)
    (tmp_path / AIRPLANE / "img" / "00000002.jpg").write_bytes(b"not a jpeg at all")
    assert check_dataset(LaSOT(tmp_path)).ok
    report = check_dataset(LaSOT(tmp_path), check_images=True)
    assert dict(report.counts) == {"unreadable_frame": 1}
    assert_found(report, "unreadable_frame", ("airplane-1", "00000002.jpg: frame 1 cannot be decoded"))


def test_nan_row(tmp_path):
    fx.make_lasot(tmp_path)
    fx.write_text(tmp_path / AIRPLANE / "groundtruth.txt", "1,2,3,4\nNaN,NaN,NaN,NaN\n0,0,0,0\n9,10,11,12\n")
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"bad_row": 1}
    assert_found(report, "bad_row", ("airplane-1", "groundtruth.txt: line 2: NaN row"))


def test_ground_truth_length_mismatch(tmp_path):
    fx.make_lasot(tmp_path)
    fx.write_image(tmp_path / AIRPLANE / "img" / "00000005.jpg")
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"unannotated_frames": 1} and report.ok  # the toolkits ignore the extra frame
    assert "unannotated_frames (warning): 1" in report.summary()
    assert "5 '.jpg' files but 4 ground-truth rows" in report.summary()
    fx.write_text(tmp_path / AIRPLANE / "groundtruth.txt", "1,2,3,4\n5,6,7,8\n0,0,0,0\n")
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"length_mismatch": 1}
    assert_found(report, "length_mismatch", ("airplane-1", "full_occlusion.txt: has 4 rows but groundtruth.txt has 3"))


def test_missing_sequence_and_invalid_box(tmp_path):
    fx.make_lasot(tmp_path)
    fx.write_text(tmp_path / "testing_set.txt", "airplane-1\nrubicCube-1\ncat-3\n")
    fx.write_text(tmp_path / "rubicCube" / "rubicCube-1" / "groundtruth.txt", "3,4,5,6\n4,5,0,7\n5,6,7,8\n")
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"missing_sequence": 1, "invalid_box": 1} and not report.ok
    summary = report.summary()
    assert "cat-3:" in summary and "groundtruth.txt: ground-truth file is missing" in summary
    assert "rubicCube-1: " in summary and "groundtruth.txt: line 2: width or height not positive" in summary


def test_gaps_in_listed_frames(tmp_path):
    fx.make_trackingnet(tmp_path)
    (tmp_path / "TEST" / "frames" / "vidTest_0" / "7.jpg").unlink()
    report = check_dataset(TrackingNet(tmp_path))
    assert dict(report.counts) == {"missing_frame": 1}
    assert_found(report, "missing_frame", ("vidTest_0", "no frame numbered 7 between 0 and 11"))


def test_got10k_train_copy_is_clean(tmp_path):
    report = check_dataset(GOT10k(fx.make_got10k(tmp_path), split="train_full"), check_images=True)
    assert report.ok, report.summary()


def test_tool_prints_the_report_and_exits_by_it(tmp_path, capsys):
    fx.make_lasot(tmp_path)
    assert run_tool("--dataset", "lasot", "--root", str(tmp_path), "--check-images") == 0
    assert capsys.readouterr().out == check_dataset(LaSOT(tmp_path), check_images=True).summary() + "\n"
    (tmp_path / AIRPLANE / "img" / "00000001.jpg").unlink()
    assert run_tool("--dataset", "lasot", "--root", str(tmp_path)) == 1
    assert capsys.readouterr().out == check_dataset(LaSOT(tmp_path)).summary() + "\n"
    assert run_tool("--dataset", "got10k_val", "--root", str(tmp_path / "nothing")) == 2
    printed = capsys.readouterr()
    assert "list.txt" in printed.err and printed.out == ""  # cannot be opened: an input error, one line


@pytest.mark.parametrize("name, maker", [("tnl2k", fx.make_tnl2k), ("coco", fx.make_coco)])
def test_other_clean_copies(tmp_path, name, maker):
    from mixformerv2.data.registry import get_dataset

    maker(tmp_path)
    if name == "tnl2k":
        fx.write_text(tmp_path / "TNL2K_testing_set.txt", fx.TNL2K_NAME + "\n")
    report = check_dataset(get_dataset(name, root=tmp_path), check_images=True)
    assert report.ok, report.summary()
