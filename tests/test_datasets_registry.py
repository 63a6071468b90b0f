"""Dataset registry, root resolution and strict ground-truth parsing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dataset_fixtures as fx
from mixformerv2.data.datasets.annotations import AnnotationError, read_boxes
from mixformerv2.data.datasets.got10k import GOT10k
from mixformerv2.data.datasets.lasot import LaSOT
from mixformerv2.data.datasets.uav import UAV123
from mixformerv2.data.registry import dataset_root, get_dataset, list_datasets

REQUIRED_NAMES = {"lasot", "lasot_ext", "tnl2k", "got10k_train", "got10k_vottrain", "got10k_votval",
                  "got10k_train_full", "got10k_val", "got10k_test", "trackingnet_train", "trackingnet", "uav123",
                  "otb100", "nfs", "coco"}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No root variables or paths file from the caller's environment; the working directory is empty."""
    for name in list_datasets() + ["got10k", "trackingnet"]:
        monkeypatch.delenv(f"MIXFORMERV2_{name.upper()}_ROOT", raising=False)
    monkeypatch.delenv("MIXFORMERV2_PATHS", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return monkeypatch


def test_registry_names_and_unknown():
    assert REQUIRED_NAMES <= set(list_datasets())
    with pytest.raises(ValueError, match="unknown dataset 'vot2020'; known: .*lasot.*uav123"):
        get_dataset("vot2020", root=".")


def test_get_dataset_builds_each_reader(tmp_path):
    fx.make_got10k(tmp_path / "got10k")
    assert isinstance(get_dataset("lasot", root=fx.make_lasot(tmp_path / "lasot")), LaSOT)
    assert get_dataset("LaSOT", root=tmp_path / "lasot", split="train").name == "lasot_train"
    reader = get_dataset("got10k_val", root=tmp_path / "got10k")
    assert isinstance(reader, GOT10k) and reader.split == "val"
    assert get_dataset("got10k_test", root=tmp_path / "got10k", split="test").split == "test"
    with pytest.raises(ValueError, match="'got10k_val' is the 'val' split"):
        get_dataset("got10k_val", root=tmp_path / "got10k", split="test")
    assert isinstance(get_dataset("uav123", root=tmp_path), UAV123)
    trackingnet = get_dataset("trackingnet_train", root=fx.make_trackingnet(tmp_path / "tn"), chunks=[0])
    assert trackingnet.sequence_names == ["vidA_0"]


def test_root_resolution_order(clean_env, tmp_path):
    assert dataset_root("lasot") == Path("data/lasot")
    assert dataset_root("got10k_val") == Path("data/got10k")
    assert dataset_root("trackingnet_train") == Path("data/trackingnet")
    Path("paths.yaml").write_text("lasot: /datasets/lasot\ngot10k: relative/got\n")
    assert dataset_root("lasot") == Path("/datasets/lasot")
    assert dataset_root("got10k_vottrain") == Path.cwd() / "relative" / "got"
    other = tmp_path / "elsewhere" / "my_paths.yaml"
    fx.write_text(other, "lasot: /from/env/file\n")
    clean_env.setenv("MIXFORMERV2_PATHS", str(other))
    assert dataset_root("lasot") == Path("/from/env/file")
    clean_env.setenv("MIXFORMERV2_GOT10K_ROOT", "/env/got10k")
    assert dataset_root("got10k_test") == Path("/env/got10k")
    clean_env.setenv("MIXFORMERV2_GOT10K_TEST_ROOT", "/env/got10k_test")
    assert dataset_root("got10k_test") == Path("/env/got10k_test")
    clean_env.setenv("MIXFORMERV2_LASOT_ROOT", "/env/lasot")
    assert dataset_root("lasot") == Path("/env/lasot")
    assert dataset_root("lasot", override="/cli/lasot") == Path("/cli/lasot")


def test_bad_paths_files(clean_env, tmp_path):
    clean_env.setenv("MIXFORMERV2_PATHS", str(tmp_path / "none.yaml"))
    with pytest.raises(FileNotFoundError, match="none.yaml"):
        dataset_root("lasot")
    fx.write_text(tmp_path / "list.yaml", "- /a\n- /b\n")
    clean_env.setenv("MIXFORMERV2_PATHS", str(tmp_path / "list.yaml"))
    with pytest.raises(ValueError, match="list.yaml: a paths file is a YAML mapping"):
        dataset_root("lasot")
    fx.write_text(tmp_path / "typo.yaml", "lasott: /a\n")
    clean_env.setenv("MIXFORMERV2_PATHS", str(tmp_path / "typo.yaml"))
    with pytest.raises(ValueError, match="unknown dataset names \\['lasott'\\]"):
        dataset_root("lasot")


def test_get_dataset_uses_resolved_root(clean_env, tmp_path):
    clean_env.setenv("MIXFORMERV2_LASOT_ROOT", str(fx.make_lasot(tmp_path / "lasot")))
    assert get_dataset("lasot").root == tmp_path / "lasot"


@pytest.mark.parametrize("text, line, message", [
    ("1,2,3,4\n1,2,3\n", 2, "expected 4 fields x,y,w,h, found 3"),
    ("1,2,3,4\n1,2,3,4,5\n", 2, "found 5"),
    ("1,2,3,4\n1,2,x,4\n", 2, "value 'x' is not a number"),
    ("1,2,3\n1,2,3\n", 1, "found 3"),
    ("1,2,3,4\n\n1,2,3,4\n", 2, "empty line"),
    ("1,2,3,4\n1,2,3,4\nNaN,NaN,NaN,NaN\n", 3, "NaN row"),
    ("1,2,3,4\n1,nan,3,4\n", 2, "partly NaN"),
    ("1,2,inf,4\n", 1, "infinite"),
])
def test_bad_rows_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "groundtruth.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        read_boxes(path, ",")
    assert info.value.line == line and f"groundtruth.txt: line {line}: " in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nan_rows_only_where_allowed(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n")
    boxes = read_boxes(path, ",", allow_nan=True)
    assert np.isnan(boxes[1]).all() and boxes[0].tolist() == [1, 2, 3, 4]
    path.write_text("1\t2\t3\t4\n5 6 7 8\n")
    assert read_boxes(path, "auto").tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    path.write_text("")
    with pytest.raises(AnnotationError, match="empty"):
        read_boxes(path, ",")


def test_reader_errors_name_the_file(tmp_path):
    fx.make_lasot(tmp_path)
    seq_dir = tmp_path / "airplane" / "airplane-1"
    fx.write_text(seq_dir / "out_of_view.txt", "0,0,0\n")
    with pytest.raises(AnnotationError, match=r"out_of_view.txt: has 3 rows but groundtruth.txt has 4") as info:
        LaSOT(tmp_path)["airplane-1"]
    assert info.value.kind == "length_mismatch"
    (seq_dir / "full_occlusion.txt").unlink()
    with pytest.raises(FileNotFoundError, match="full_occlusion.txt: flag file is missing"):
        LaSOT(tmp_path)["airplane-1"]
    fx.make_uav123(tmp_path / "uav")
    fx.write_text(tmp_path / "uav" / "anno" / "UAV123" / "uav6.txt", fx.box_lines(fx.table_gt(110)))
    with pytest.raises(AnnotationError, match=r"uav6.txt: has 110 rows but the frame range 1-109"):
        UAV123(tmp_path / "uav")["uav_uav6"]
    fx.make_got10k(tmp_path / "got")
    label = tmp_path / "got" / "train" / "GOT-10k_Train_000001" / "cover.label"
    label.write_text("8\n0\nx\n0\n")
    with pytest.raises(AnnotationError, match="cover.label: line 3: value 'x' is not an integer"):
        GOT10k(tmp_path / "got", split="train_full")[0]
    fx.write_text(tmp_path / "got" / "test" / "GOT-10k_Test_000001" / "groundtruth.txt", "1,2,3,4\n1,2,3,4\n")
    with pytest.raises(AnnotationError, match="test ground truth has 2 rows"):
        GOT10k(tmp_path / "got", split="test")[0]
