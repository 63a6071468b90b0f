"""The dataset checker finds each planted problem and exits 1; a clean copy exits 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import dataset_fixtures as fx
from mixformerv2.data.check import check_dataset
from mixformerv2.data.datasets.got10k import GOT10k
from mixformerv2.data.datasets.lasot import LaSOT
from mixformerv2.data.datasets.trackingnet import TrackingNet

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_dataset.py"
AIRPLANE = Path("airplane") / "airplane-1"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)


def test_clean_copy_passes(tmp_path):
    report = check_dataset(LaSOT(fx.make_lasot(tmp_path)), check_images=True)
    assert report.ok and report.num_sequences == 2 and report.num_frames == 7
    assert "no problems found" in report.summary()


def test_missing_frame(tmp_path):
    fx.make_lasot(tmp_path)
    (tmp_path / AIRPLANE / "img" / "00000003.jpg").unlink()
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"missing_frame": 1}
    assert "00000003.jpg: frame 2 is missing" in report.examples["missing_frame"][0].message


def test_corrupt_frame_needs_decoding(tmp_path):
    fx.make_lasot(tmp_path)
    (tmp_path / AIRPLANE / "img" / "00000002.jpg").write_bytes(b"not a jpeg at all")
    assert check_dataset(LaSOT(tmp_path)).ok
    report = check_dataset(LaSOT(tmp_path), check_images=True)
    assert dict(report.counts) == {"unreadable_frame": 1}
    assert "00000002.jpg: frame 1 cannot be decoded" in report.summary()


def test_nan_row(tmp_path):
    fx.make_lasot(tmp_path)
    fx.write_text(tmp_path / AIRPLANE / "groundtruth.txt", "1,2,3,4\nNaN,NaN,NaN,NaN\n0,0,0,0\n9,10,11,12\n")
    report = check_dataset(LaSOT(tmp_path))
    assert dict(report.counts) == {"bad_row": 1}
    assert "groundtruth.txt: line 2: NaN row" in report.summary()


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
    assert "full_occlusion.txt: has 4 rows but groundtruth.txt has 3" in report.summary()


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
    assert "no frame numbered 7 between 0 and 11" in report.summary()


def test_got10k_train_copy_is_clean(tmp_path):
    report = check_dataset(GOT10k(fx.make_got10k(tmp_path), split="train_full"), check_images=True)
    assert report.ok, report.summary()


def test_tool_exit_status(tmp_path):
    fx.make_lasot(tmp_path)
    clean = run_tool("--dataset", "lasot", "--root", str(tmp_path), "--check-images")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 sequences, 7 frames checked" in clean.stdout and "no problems found" in clean.stdout
    (tmp_path / AIRPLANE / "img" / "00000001.jpg").unlink()
    broken = run_tool("--dataset", "lasot", "--root", str(tmp_path))
    assert broken.returncode == 1 and "missing_frame: 1" in broken.stdout
    missing_root = run_tool("--dataset", "got10k_val", "--root", str(tmp_path / "nothing"))
    assert missing_root.returncode == 1 and "list.txt" in missing_root.stdout


@pytest.mark.parametrize("name, maker", [("tnl2k", fx.make_tnl2k), ("coco", fx.make_coco)])
def test_other_clean_copies(tmp_path, name, maker):
    from mixformerv2.data.registry import get_dataset

    maker(tmp_path)
    if name == "tnl2k":
        fx.write_text(tmp_path / "TNL2K_testing_set.txt", fx.TNL2K_NAME + "\n")
    report = check_dataset(get_dataset(name, root=tmp_path), check_images=True)
    assert report.ok, report.summary()
