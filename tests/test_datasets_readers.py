"""Every benchmark reader on a tiny copy in the benchmark's own format: exact boxes, visibility, frame paths,
classes and language."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import dataset_fixtures as fx
from mixformerv2.data.datasets.coco import COCO
from mixformerv2.data.datasets.got10k import GOT10k
from mixformerv2.data.datasets.lasot import LaSOT, LaSOTExt
from mixformerv2.data.datasets.nfs import NfS
from mixformerv2.data.datasets.otb import OTB100
from mixformerv2.data.datasets.tnl2k import TNL2k
from mixformerv2.data.datasets.trackingnet import TrackingNet
from mixformerv2.data.datasets.uav import UAV123
from mixformerv2.data.sequence import Sequence, read_frame_rgb


def test_lasot_sequence(tmp_path):
    reader = LaSOT(fx.make_lasot(tmp_path))
    assert reader.name == "lasot" and len(reader) == 2
    assert reader.sequence_names == ["airplane-1", "rubicCube-1"]
    seq = reader["airplane-1"]
    assert isinstance(seq, Sequence) and seq.dataset == "lasot" and len(seq) == 4
    np.testing.assert_array_equal(seq.gt_xywh, fx.LASOT_GT)
    assert seq.gt_xywh.dtype == np.float64
    assert seq.visible.tolist() == fx.LASOT_VISIBLE
    assert seq.meta["absent"].tolist() == [False, True, True, False]
    assert seq.object_class == "airplane"
    assert seq.language == "white airplane landing on the runway"
    assert tuple(seq.frame_paths) == tuple(tmp_path / "airplane" / "airplane-1" / "img" / f"{i:08d}.jpg"
                                           for i in range(1, 5))
    assert seq.frame_paths[-1].name == "00000004.jpg" and seq.frame_paths[1:3][0].name == "00000002.jpg"
    frame = read_frame_rgb(seq.frame_paths[0])
    assert frame.shape == (8, 8, 3) and frame[0, 0, 0] > frame[0, 0, 2] + 30  # RGB: the red corner (BGR 0,0,255)
    rubic = reader[1]
    assert rubic.object_class == "rubicCube" and rubic.language is None and rubic.visible.all()


def test_lasot_packaged_lists(tmp_path):
    reader = LaSOT(fx.make_lasot(tmp_path, with_list=False))
    assert len(reader) == 280 and reader.sequence_names[0] == "airplane-1"
    np.testing.assert_array_equal(reader["airplane-1"].gt_xywh, fx.LASOT_GT)
    train = LaSOT(tmp_path, split="train")
    assert train.name == "lasot_train" and len(train) == 1120
    assert not set(train.sequence_names) & set(reader.sequence_names)
    ext = LaSOTExt(fx.make_lasot_ext(tmp_path / "ext"))
    assert ext.name == "lasot_ext" and len(ext) == 150
    seq = ext["atv-1"]
    assert seq.dataset == "lasot_ext" and seq.visible.tolist() == [True, True, False]
    assert seq.object_class == "atv" and seq.language == "red atv on sand"


def test_lasot_override_list_for_training(tmp_path):
    fx.make_lasot(tmp_path)
    fx.write_text(tmp_path / "training_set.txt", "rubicCube-1\n")
    assert LaSOT(tmp_path, split="train").sequence_names == ["rubicCube-1"]


def test_got10k_train_labels_and_meta(tmp_path):
    fx.make_got10k(tmp_path)
    reader = GOT10k(tmp_path, split="train_full")
    assert reader.name == "got10k_train_full"
    assert reader.sequence_names == [f"GOT-10k_Train_{i:06d}" for i in (1, 2, 3)]
    seq = reader[0]
    np.testing.assert_array_equal(seq.gt_xywh, fx.GOT_TRAIN_GT)
    assert seq.visible.tolist() == fx.GOT_TRAIN_VISIBLE
    assert seq.meta["cover"].tolist() == fx.GOT_TRAIN_COVER
    assert seq.meta["absence"].tolist() == [False, False, False, True]
    assert seq.meta["resolution"] == (1280, 720)
    assert seq.object_class == "ivory gull" and seq.meta["url"] == "https://example.org/v"
    assert list(seq.frame_paths) == [tmp_path / "train" / "GOT-10k_Train_000001" / f"{i:08d}.jpg"
                                     for i in range(1, 5)]
    unlabelled = reader["GOT-10k_Train_000002"]
    assert unlabelled.visible.all() and unlabelled.object_class is None and "resolution" not in unlabelled.meta


def test_got10k_index_splits(tmp_path):
    fx.make_got10k(tmp_path)
    with pytest.raises(ValueError, match="not the official GOT-10k train list"):
        GOT10k(tmp_path, split="vottrain")
    fx.write_text(tmp_path / "got10k_vot_train_split.txt", "2\n0\n")
    assert GOT10k(tmp_path, split="vottrain").sequence_names == ["GOT-10k_Train_000003", "GOT-10k_Train_000001"]
    names = [f"GOT-10k_Train_{i:06d}" for i in range(1, 9336)]
    fx.write_text(tmp_path / "train" / "list.txt", "\n".join(names) + "\n")
    for split, count in (("train", 7934), ("votval", 1249), ("train_full", 9335), ("ltrval", 1401)):
        assert len(GOT10k(tmp_path, split=split)) == count
    full = GOT10k(tmp_path, split="train_full").sequence_names
    assert sorted(full) == names and full != names  # the packaged permutation


def test_got10k_val_and_test(tmp_path):
    fx.make_got10k(tmp_path)
    val = GOT10k(tmp_path, split="val")["GOT-10k_Val_000001"]
    assert val.dataset == "got10k_val" and val.visible.tolist() == [True, True, True]
    assert val.meta["cover"].tolist() == [8, 8, 1]
    test = GOT10k(tmp_path, split="test")[0]
    assert len(test) == 5 and test.gt_xywh.shape == (5, 4)
    np.testing.assert_array_equal(test.gt_xywh[0], [100.1234, 200.5, 30.25, 40.75])
    assert np.isnan(test.gt_xywh[1:]).all()
    assert test.visible.tolist() == [True, False, False, False, False]
    assert [p.name for p in test.frame_paths] == [f"{i:08d}.jpg" for i in range(1, 6)]


def test_trackingnet(tmp_path):
    fx.make_trackingnet(tmp_path)
    test = TrackingNet(tmp_path)
    assert test.name == "trackingnet" and test.sequence_names == ["vidTest_0"]
    seq = test[0]
    assert [p.name for p in seq.frame_paths] == [f"{i}.jpg" for i in range(12)]
    np.testing.assert_array_equal(seq.gt_xywh[0], [10, 20, 30, 40])
    assert np.isnan(seq.gt_xywh[1:]).all() and seq.visible.sum() == 1
    train = TrackingNet(tmp_path, split="train")
    assert train.name == "trackingnet_train" and train.sequence_names == ["vidA_0", "vidB_0"]
    seq = train["vidB_0"]
    assert seq.meta["chunk"] == "TRAIN_1"
    assert list(seq.frame_paths) == [tmp_path / "TRAIN_1" / "frames" / "vidB_0" / f"{i}.jpg" for i in range(2)]
    np.testing.assert_array_equal(seq.gt_xywh, [[0, 0, 5, 6], [1, 1, 5, 6]])
    assert TrackingNet(tmp_path, split="train", chunks=[1]).sequence_names == ["vidB_0"]
    with pytest.raises(FileNotFoundError, match="TRAIN_5"):
        TrackingNet(tmp_path, split="train", chunks=[5])


def test_tnl2k(tmp_path):
    reader = TNL2k(fx.make_tnl2k(tmp_path))
    assert reader.name == "tnl2k" and len(reader) == 700
    seq = reader[fx.TNL2K_NAME]
    assert [p.name for p in seq.frame_paths] == fx.TNL2K_FRAMES
    np.testing.assert_array_equal(seq.gt_xywh, fx.TNL2K_GT)
    assert seq.visible.tolist() == [True, False, True]
    assert seq.language == "the man holding a sword" and seq.object_class is None
    np.testing.assert_array_equal(read_frame_rgb(seq.frame_paths[1])[0, :2], [[255, 0, 0], [128, 128, 128]])  # png


def test_tnl2k_negative_size_is_an_invalid_frame(tmp_path):
    fx.make_tnl2k(tmp_path)
    fx.write_text(tmp_path / fx.TNL2K_NAME / "groundtruth.txt", "1,2,3,4\n1,2,-3,4\n1,2,3,4\n")
    seq = TNL2k(tmp_path)[fx.TNL2K_NAME]
    assert seq.visible.tolist() == [True, False, True] and seq.gt_xywh[1].tolist() == [1, 2, -3, 4]
    assert [i.kind for i in seq.annotation_issues] == ["invalid_box"]
    assert "groundtruth.txt: line 2: width or height not positive" in seq.annotation_issues[0].message


def test_uav123(tmp_path):
    reader = UAV123(fx.make_uav123(tmp_path))
    assert reader.name == "uav123" and len(reader) == 123
    seq = reader["uav_bird1_2"]
    assert len(seq) == 703 and seq.object_class == "bird"
    assert seq.frame_paths[0] == tmp_path / "data_seq" / "UAV123" / "bird1" / "000775.jpg"
    assert seq.frame_paths[-1].name == "001477.jpg"
    expected = fx.table_gt(703, nan_rows=(1, 700))
    np.testing.assert_array_equal(seq.gt_xywh, expected)
    assert not seq.visible[1] and not seq.visible[700] and seq.visible[[0, 2, 699, 701]].all()
    assert seq.meta["start_frame"] == 775 and seq.meta["end_frame"] == 1477
    assert len(reader["uav_uav6"]) == 109


def test_otb_quirks(tmp_path):
    reader = OTB100(fx.make_otb(tmp_path))
    assert reader.name == "otb100" and len(reader) == 100
    tiger = reader["Tiger1"]
    assert len(tiger) == 349 and tiger.frame_paths[0].name == "0006.jpg"
    np.testing.assert_array_equal(tiger.gt_xywh, fx.table_gt(354)[5:])
    david = reader["David"]
    assert david.frame_paths[0].name == "0300.jpg" and david.frame_paths[-1].name == "0770.jpg"
    np.testing.assert_array_equal(reader["Jogging_2"].gt_xywh, fx.table_gt(307) + 100)
    assert reader["Jogging_1"].frame_paths[0] == reader["Jogging_2"].frame_paths[0]
    board = reader["Board"]
    assert board.frame_paths[0] == tmp_path / "Board" / "img" / "00001.jpg"
    np.testing.assert_array_equal(board.gt_xywh, fx.table_gt(698))
    kite = reader["KiteSurf"]
    assert kite.frame_paths[0] == tmp_path / "KiteSurf" / "jpg" / "0001.png" and kite.object_class == "face"


def test_nfs(tmp_path):
    reader = NfS(fx.make_nfs(tmp_path))
    assert reader.name == "nfs" and len(reader) == 100
    seq = reader["nfs_car_jumping"]
    assert len(seq) == 22 and seq.frame_paths[0] == tmp_path / "sequences" / "car_jumping" / "00001.jpg"
    np.testing.assert_array_equal(seq.gt_xywh, fx.table_gt(22))
    assert seq.meta["occlusion"] == "False" and seq.object_class == "car"


def test_coco(tmp_path):
    reader = COCO(fx.make_coco(tmp_path))
    assert reader.name == "coco" and reader.sequence_names == ["101", "103"]
    seq = reader["101"]
    assert seq.frame_paths == (tmp_path / "train2017" / "000000000001.jpg",)
    np.testing.assert_array_equal(seq.gt_xywh, [[1.5, 2.0, 60.0, 70.25]])
    assert seq.visible.tolist() == [True] and seq.object_class == "person" and seq.meta["image_id"] == 1
    small = reader[1]
    assert small.object_class == "dog" and small.visible.tolist() == [False]


def test_reader_interface_errors(tmp_path):
    reader = LaSOT(fx.make_lasot(tmp_path))
    with pytest.raises(KeyError, match="no sequence named 'nope-1'"):
        reader["nope-1"]
    with pytest.raises(IndexError):
        reader[2]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LaSOT(tmp_path / "missing")
    assert [s.name for s in reader] == reader.sequence_names


def test_lasot_280_sequences_read_from_annotations_alone(tmp_path, monkeypatch):
    """The evaluator reads the ground truth of all 280 LaSOT test sequences: no reader opens an image, and a root
    holding only the annotation files (the toolkits' layout, no img/ folders) gives the same sequences."""
    names = LaSOT(fx.make_lasot(tmp_path, with_list=False)).sequence_names
    gt = np.column_stack([np.arange(300) + 1, np.full(300, 4), np.full(300, 50), np.arange(300) % 7 + 1])
    flags = ",".join("1" if i % 10 == 3 else "0" for i in range(300))
    for name in names:
        folder = tmp_path / name.rsplit("-", 1)[0] / name
        fx.write_text(folder / "groundtruth.txt", fx.box_lines(gt))
        fx.write_text(folder / "full_occlusion.txt", flags)
        fx.write_text(folder / "out_of_view.txt", flags)

    def no_images(*args, **kwargs):
        raise AssertionError(f"a reader decoded an image: {args[:1]}")

    for name in ("imread", "imdecode", "VideoCapture"):
        monkeypatch.setattr(cv2, name, no_images)
    sequences = list(LaSOT(tmp_path))
    assert [s.name for s in sequences] == names
    assert not (tmp_path / "zebra" / "zebra-10" / "img").exists()  # annotation-only, as 278 of the 280 are
    for seq in sequences:
        assert len(seq) == 300
        np.testing.assert_array_equal(seq.gt_xywh, gt)
        np.testing.assert_array_equal(seq.visible, [i % 10 != 3 for i in range(300)])


def test_frame_paths_behave_like_a_tuple(tmp_path):
    seq = LaSOT(fx.make_lasot(tmp_path))["rubicCube-1"]
    paths = tuple(Path(tmp_path / "rubicCube" / "rubicCube-1" / "img" / f"{i:08d}.jpg") for i in range(1, 4))
    assert seq.frame_paths == paths and list(seq.frame_paths) == list(paths) and len(seq.frame_paths) == 3
    assert seq.frame_paths[-1] == paths[-1] and seq.frame_paths[::2] == paths[::2]


def test_trackingnet_incomplete_official_copy_lists_all_511(tmp_path):
    fx.write_text(tmp_path / "TEST" / "anno" / "-Dz7OIf54b0_0.txt", "1,2,3,4\n")
    fx.write_image(tmp_path / "TEST" / "frames" / "-Dz7OIf54b0_0" / "0.jpg")
    reader = TrackingNet(tmp_path)
    assert len(reader) == 511 and reader[0].name == "-Dz7OIf54b0_0"
    with pytest.raises(FileNotFoundError, match="0-6LB4FqxoE_0.txt"):
        reader["0-6LB4FqxoE_0"]
