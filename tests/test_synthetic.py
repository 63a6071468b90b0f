"""The synthetic video generator: determinism, exact on-disk formats, flags that match what was drawn, and motion
large enough that holding the first box fails."""
from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mixformerv2.data.synthetic import (PRESETS, SceneConfig, cover_level, frame_truth, generate_all,
                                        generate_got10k, generate_lasot, load_truth, make_video)

TINY = PRESETS["tiny"]
# Every event forced, small frames: used to check flags against the drawn masks.
EVENTFUL = SceneConfig(width=96, height=72, frames=40, motion_gap=(4, 8), full_occlusion_prob=1.0,
                       out_of_view_prob=1.0, max_floaters=2)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n"), f"{path} does not end with a newline"
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    generate_all(root, "tiny", seed=0)
    return root


@pytest.fixture(scope="module")
def eventful_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eventful")
    generate_lasot(root / "lasot", classes=3, train_per_class=2, test_per_class=1, config=EVENTFUL, seed=3)
    generate_got10k(root / "got10k", {"train": 3, "val": 3, "test": 1}, config=EVENTFUL, seed=3)
    return root


# -- determinism ---------------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_different_seed_different_bytes(tiny_root, tmp_path):
    generate_all(tmp_path / "again", "tiny", seed=0, workers=2)  # also: worker processes change nothing
    generate_all(tmp_path / "other", "tiny", seed=1)
    reference = _tree_bytes(tiny_root)
    assert _tree_bytes(tmp_path / "again") == reference
    other = _tree_bytes(tmp_path / "other")
    assert other.keys() == reference.keys()
    frames = [k for k in reference if k.endswith(".jpg")]
    assert sum(other[k] != reference[k] for k in frames) > 0.9 * len(frames)


# -- file layout ---------------------------------------------------------------------------------------------------

def test_lasot_layout(tiny_root):
    root, frames = tiny_root / "lasot", TINY.lasot_frames
    train, test = _lines(root / "training_set.txt"), _lines(root / "testing_set.txt")
    assert train == ["ellipse-1", "polygon-1", "blob-1"] and test == ["ellipse-2", "polygon-2", "blob-2"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["blob", "ellipse", "polygon"]
    for name in train + test:
        folder = root / name.rsplit("-", 1)[0] / name
        assert sorted(p.name for p in folder.iterdir()) == [
            "full_occlusion.txt", "groundtruth.txt", "img", "nlp.txt", "out_of_view.txt"]
        assert sorted(p.name for p in (folder / "img").iterdir()) == [f"{i:08d}.jpg" for i in range(1, frames + 1)]
        image = cv2.imread(str(folder / "img" / "00000001.jpg"))
        assert image.shape == (TINY.scene.height, TINY.scene.width, 3)
        rows = [[int(v) for v in line.split(",")] for line in _lines(folder / "groundtruth.txt")]
        assert len(rows) == frames and all(len(r) == 4 for r in rows)
        assert rows[0][0] >= 1 and rows[0][1] >= 1 and rows[0][2] > 0  # 1-based, present in frame 1
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            (line,) = _lines(folder / flag_file)
            assert len(line.split(",")) == frames and set(line.split(",")) <= {"0", "1"}
        (sentence,) = _lines(folder / "nlp.txt")
        assert name.split("-")[0] in sentence


META_KEYS = ["url", "begin", "end", "anno_fps", "object_class", "motion_class", "major_class", "root_class",
             "motion_adverb", "resolution"]


def test_got10k_layout(tiny_root):
    root, frames = tiny_root / "got10k", TINY.got10k_frames
    for split, prefix in (("train", "GOT-10k_Train"), ("val", "GOT-10k_Val"), ("test", "GOT-10k_Test")):
        names = _lines(root / split / "list.txt")
        assert names == [f"{prefix}_{i:06d}" for i in range(1, TINY.got10k_counts[split] + 1)]
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(names + ["list.txt"])
        for name in names:
            folder = root / split / name
            jpgs = [f"{i:08d}.jpg" for i in range(1, frames + 1)]
            labels = [] if split == "test" else ["absence.label", "cover.label", "cut_by_image.label", "meta_info.ini"]
            assert sorted(p.name for p in folder.iterdir()) == sorted(jpgs + ["groundtruth.txt"] + labels)
            rows = _lines(folder / "groundtruth.txt")
            assert len(rows) == (1 if split == "test" else frames)
            assert all(len(r.split(",")) == 4 and all(len(v.split(".")[1]) == 4 for v in r.split(",")) for r in rows)
            if split == "test":
                continue
            for label, allowed in (("absence", {0, 1}), ("cover", set(range(9))), ("cut_by_image", {0, 1})):
                values = [int(v) for v in _lines(folder / f"{label}.label")]
                assert len(values) == frames and set(values) <= allowed
            meta = (folder / "meta_info.ini").read_text().splitlines(keepends=True)
            assert meta[0] == "[METAINFO]\n"
            assert [line.split(": ")[0] for line in meta[1:]] == META_KEYS
            assert ast.literal_eval(meta[10].split(": ")[1]) == (TINY.scene.width, TINY.scene.height)
            assert meta[5].split(": ")[-1][:-1] in ("ellipse", "polygon", "blob", "star", "ring")  # ltr's parsing


# -- flags and boxes match what was drawn --------------------------------------------------------------------------

def _replay_masks(truth, config, seed, dataset):
    video = make_video(config, seed, dataset, truth.split, truth.index, truth.shape_kind)
    return [video.render(t, paint=False) for t in range(len(video))]


def _check_box_and_fractions(truth, rendered_frames):
    for t, rendered in enumerate(rendered_frames):
        mask, area = rendered.target_mask, rendered.target_area
        x, y, w, h = truth.box_xywh[t]
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            assert (w, h) == (0, 0)
            continue
        inside = (xs >= x) & (xs < x + w) & (ys >= y) & (ys < y + h)
        assert inside.all(), f"{truth.name} frame {t}: target pixels outside the ground-truth box"
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)  # tight
        assert truth.visible_fraction[t] == pytest.approx(rendered.visible_mask.sum() / area, abs=1e-6)
        assert truth.in_frame_fraction[t] == pytest.approx(mask.sum() / area, abs=1e-6)


def test_lasot_flags_and_boxes_match_drawn_masks(eventful_root):
    root = eventful_root / "lasot"
    truths = load_truth(root)
    counts = {"oov": 0, "full": 0, "partial": 0}
    for truth in truths.values():
        rendered = _replay_masks(truth, EVENTFUL, 3, "lasot")
        _check_box_and_fractions(truth, rendered)
        folder = root / truth.object_class / truth.name
        occlusion = np.array(_lines(folder / "full_occlusion.txt")[0].split(","), dtype=int)
        out_of_view = np.array(_lines(folder / "out_of_view.txt")[0].split(","), dtype=int)
        in_frame = np.array([r.target_mask.any() for r in rendered])
        seen = np.array([r.visible_mask.any() for r in rendered])
        np.testing.assert_array_equal(out_of_view, ~in_frame)
        np.testing.assert_array_equal(occlusion, in_frame & ~seen)
        gt = np.loadtxt(folder / "groundtruth.txt", delimiter=",", dtype=np.int64)
        expected = truth.box_xywh + np.array([1, 1, 0, 0]) * in_frame[:, None]  # 1-based; zeros out of view
        np.testing.assert_array_equal(gt, expected)
        assert truth.visible_fraction[0] == 1.0  # the first frame always shows the whole target
        counts["oov"] += out_of_view.sum()
        counts["full"] += occlusion.sum()
        counts["partial"] += ((truth.visible_fraction > 0) & (truth.visible_fraction < 1)).sum()
    assert min(counts.values()) > 0, counts  # every kind of event actually happened


def test_got10k_labels_match_drawn_masks(eventful_root):
    root = eventful_root / "got10k"
    truths = load_truth(root)
    covers = set()
    for truth in truths.values():
        rendered = _replay_masks(truth, EVENTFUL, 3, "got10k")
        _check_box_and_fractions(truth, rendered)
        folder = root / truth.split / truth.name
        gt = np.loadtxt(folder / "groundtruth.txt", delimiter=",", ndmin=2)
        if truth.split == "test":
            np.testing.assert_array_equal(gt, truth.box_xywh[:1])
            continue
        np.testing.assert_array_equal(gt, truth.box_xywh)  # 0-based
        visible = np.array([r.visible_mask.sum() / r.target_area for r in rendered])
        in_frame = np.array([r.target_mask.sum() / r.target_area for r in rendered])
        absence = np.loadtxt(folder / "absence.label", dtype=int)
        cover = np.loadtxt(folder / "cover.label", dtype=int)
        cut = np.loadtxt(folder / "cut_by_image.label", dtype=int)
        np.testing.assert_array_equal(absence, visible == 0)
        np.testing.assert_array_equal(cover, [cover_level(v) for v in visible])
        np.testing.assert_array_equal(cut, (in_frame > 0) & (in_frame < 1))
        covers.update(cover.tolist())
    assert {0, 8} <= covers and covers - {0, 8}, covers


def test_painted_target_pixels_are_the_visible_mask():
    """Paint the target in a colour nothing else uses: the pixels showing it must be exactly the visible mask."""
    config = replace(EVENTFUL, illumination=0.0, noise_sigma=0.0, motion_blur=False)
    for index in range(3):
        video = make_video(config, 11, "lasot", "train", index)
        video.target.texture[:] = (255, 0, 255)
        for t in range(0, len(video), 3):
            rendered = video.render(t)
            shown = np.all(rendered.image == (255, 0, 255), axis=2)
            np.testing.assert_array_equal(shown, rendered.visible_mask)
            assert frame_truth(rendered)[1] == rendered.visible_mask.sum() / rendered.target_area


def test_cover_levels():
    assert [cover_level(v) for v in (0.0, 1e-6, 0.15, 0.1500001, 0.3, 0.45, 0.6, 0.75, 0.9, 0.91, 0.999, 1.0)] == [
        0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8]


# -- difficulty ----------------------------------------------------------------------------------------------------

def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def test_holding_the_first_box_scores_low():
    config = replace(PRESETS["quickstart"].scene, frames=PRESETS["quickstart"].lasot_frames)
    scores = []
    for index in range(6):
        video = make_video(config, 0, "lasot", "train", index)
        boxes, visible = [], []
        for t in range(len(video)):
            box, fraction, _ = frame_truth(video.render(t, paint=False))
            boxes.append(box)
            visible.append(fraction > 0)
        boxes = np.asarray(boxes, dtype=np.float64)
        held = np.repeat(boxes[:1], len(boxes), axis=0)
        scores.append(_iou_xywh(held, boxes)[np.asarray(visible)].mean())
        side = np.sqrt(boxes[0, 2] * boxes[0, 3])
        assert 0.1 * min(config.width, config.height) <= side <= 0.3 * min(config.width, config.height)
    assert np.mean(scores) < 0.35, scores


# -- the benchmark readers read the files unchanged ----------------------------------------------------------------

def test_benchmark_readers_read_the_synthetic_formats(tiny_root):
    lasot = pytest.importorskip("mixformerv2.data.datasets.lasot")
    got10k = pytest.importorskip("mixformerv2.data.datasets.got10k")
    lasot_truth, got_truth = load_truth(tiny_root / "lasot"), load_truth(tiny_root / "got10k")
    for split in ("train", "test"):
        dataset = lasot.LaSOT(tiny_root / "lasot", split)
        assert len(dataset) == 3
        for i in range(len(dataset)):
            sequence, truth = dataset[i], lasot_truth[dataset[i].name]
            present = truth.box_xywh[:, 2] > 0
            np.testing.assert_array_equal(sequence.gt_xywh, truth.box_xywh + np.outer(present, [1, 1, 0, 0]))
            np.testing.assert_array_equal(sequence.visible, truth.visible_fraction > 0)
            assert sequence.object_class == truth.object_class and len(sequence) == TINY.lasot_frames
    for split in ("val", "test"):
        dataset = got10k.GOT10k(tiny_root / "got10k", split)
        assert len(dataset) == TINY.got10k_counts[split]
        for i in range(len(dataset)):
            sequence, truth = dataset[i], got_truth[dataset[i].name]
            assert len(sequence) == TINY.got10k_frames
            np.testing.assert_array_equal(sequence.gt_xywh[0], truth.box_xywh[0])
            if split == "val":
                np.testing.assert_array_equal(sequence.gt_xywh, truth.box_xywh)
                np.testing.assert_array_equal(sequence.visible, truth.visible_fraction > 0)
                assert sequence.meta["resolution"] == (TINY.scene.width, TINY.scene.height)
