"""Training pipeline (official_spec §3.9): crops, boxes, jitter, flips, determinism, skips, loader."""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mixformerv2.config import Config
from mixformerv2.data.pipeline import (CropSpec, TrackingTrainDataset, TripletProcessing, _joint_transform,
                                       build_sampler, build_train_loader, flip_box_xywh, jitter_box_xywh,
                                       read_sample_frames)
from mixformerv2.data.sampling import FrameRef, FrameSampler, TripletSample
from mixformerv2.data.sequence import Sequence
from mixformerv2.imaging import IMAGENET_MEAN, IMAGENET_STD, denormalize_image, normalize_image

HEIGHT, WIDTH = 48, 64
TEMPLATE, SEARCH = 32, 64


def write_sequence(root: Path, name: str, boxes: np.ndarray, visible=None, ext: str = ".jpg",
                   dataset: str = "video") -> Sequence:
    """Frames with a bright rectangle on noise, written with cv2; returns the Sequence (boxes xywh pixels)."""
    folder = root / dataset / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    paths = []
    for i, (x, y, w, h) in enumerate(boxes):
        frame = rng.integers(0, 120, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[int(y):int(y + h), int(x):int(x + w)] = (230, 60, 40)
        path = folder / f"{i:08d}{ext}"
        cv2.imwrite(str(path), frame)
        paths.append(path)
    visible = np.ones(len(boxes), dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    return Sequence(name, dataset, tuple(paths), np.asarray(boxes, dtype=np.float64), visible)


def moving_boxes(n: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) + phase
    return np.stack([20 + 8 * np.sin(t / 4), 14 + 5 * np.cos(t / 5), 14 + (t % 5), 12 + 0 * t], axis=1).round()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    visible = np.ones(24, dtype=bool)
    visible[5:8] = False
    videos = [write_sequence(root, f"v{i}", moving_boxes(24, 3.0 * i), visible) for i in range(3)]
    images = [write_sequence(root, "img0", [[18, 12, 20, 16]], dataset="images")]
    return {"video": videos, "images": images}


def small_config(seed: int = 5, stage: str = "dense_to_sparse", **data) -> Config:
    """Test-sized config over the fixture's datasets (``video``, ``images``: not registry names, so the config is
    built with ``dataclasses.replace`` and not validated)."""
    cfg = Config()
    data = {"train_datasets": ("video", "images"), "train_ratios": (3.0, 1.0), "samples_per_epoch": 8,
            "search_factor": 5.0, **data}  # centre jitter 4.5 with factor 5 keeps the target centre inside the crop
    return replace(cfg, model=replace(cfg.model, template_size=TEMPLATE, search_size=SEARCH),
                   data=replace(cfg.data, **data), train=replace(cfg.train, seed=seed, stage=stage))


def make_dataset(cfg: Config, datasets, rank: int = 0, world_size: int = 1, **kwargs) -> TrackingTrainDataset:
    return TrackingTrainDataset(build_sampler(cfg, datasets), TripletProcessing.from_config(cfg),
                                cfg.data.samples_per_epoch, seed=cfg.train.seed, rank=rank, world_size=world_size,
                                **kwargs)


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def target_fractions(image: torch.Tensor, box_xywh_norm: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(fraction of target-coloured pixels in the inner half of the box, the same outside 1.5x the box) of one
    normalised crop (3, S, S). The target is drawn blue-dominant (RGB 40, 60, 230); the background is noise <= 120
    (times at most 1.2 brightness), so blue > 170 marks the target."""
    rgb = denormalize_image(image, mean, std).numpy()
    side = rgb.shape[0]
    target = rgb[..., 2] > 170
    x, y, w, h = (box_xywh_norm.double().numpy() * side).tolist()
    cx, cy = x + w / 2, y + h / 2
    cols, rows = np.meshgrid(np.arange(side) + 0.5, np.arange(side) + 0.5)
    inner = (np.abs(cols - cx) < w / 4) & (np.abs(rows - cy) < h / 4)
    outer = (np.abs(cols - cx) > 0.75 * w) | (np.abs(rows - cy) > 0.75 * h)
    return target[inner].mean(), target[outer].mean()


def test_target_lies_where_the_crop_boxes_say(datasets):
    # jitter, joint flips and per-crop flips on: every box must follow its crop's pixels
    cfg = small_config(samples_per_epoch=16, gray_prob=0.0, flip_prob=0.5, crop_flip_prob=0.5)
    dataset = make_dataset(cfg, datasets)
    for i in range(len(dataset)):
        item = dataset[i]
        crops = [(item["search_image"], item["search_box_xywh_norm"])]
        crops += list(zip(item["template_images"], item["template_boxes_xywh_norm"]))
        for image, box in crops:
            inside, outside = target_fractions(image, box)
            assert inside > 0.9 and outside < 0.02, (i, box, inside, outside)


def test_items_are_channel_first_float_crops_of_the_configured_sizes(datasets):
    item = make_dataset(small_config(), datasets)[0]
    assert item["template_images"].shape == (2, 3, TEMPLATE, TEMPLATE)
    assert item["search_image"].shape == (3, SEARCH, SEARCH)
    assert item["template_images"].dtype == item["search_image"].dtype == torch.float32
    assert item["template_frame_ids"].dtype == torch.int64 and item["label"].shape == ()


def test_same_seed_same_tensors_and_rank_split(datasets):
    cfg = small_config()
    full = make_dataset(cfg, datasets)
    assert_items_equal(full[3], make_dataset(cfg, datasets)[3])
    cfg_other = small_config(seed=6)
    assert not torch.equal(full[3]["search_image"], make_dataset(cfg_other, datasets)[3]["search_image"])
    # DDP: rank r of 2 draws global indices r, r + 2, ...; the same global index gives the same sample
    shares = [make_dataset(cfg, datasets, rank=r, world_size=2) for r in range(2)]
    indices = [[int(share[i]["index"]) for i in range(len(share))] for share in shares]
    assert set(indices[0]).isdisjoint(indices[1]) and sorted(indices[0] + indices[1]) == list(range(8))
    assert_items_equal(shares[1][1], full[3])


def test_loader_batches_do_not_depend_on_worker_count(datasets):
    cfg = small_config()
    batches = {}
    for workers in (0, 2):
        loader = build_train_loader(cfg, datasets, batch_size=4, num_workers=workers)
        batches[workers] = list(loader)
        assert len(batches[workers]) == len(loader) == 2
    for a, b in zip(batches[0], batches[2]):
        assert_items_equal(a, b)
    # a batch is the items of consecutive indices stacked on a new first axis (strings as lists)
    dataset = make_dataset(cfg, datasets)
    for b, batch in enumerate(batches[0]):
        items = [dataset[b * 4 + j] for j in range(4)]
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, torch.stack([item[key] for item in items])), key
            else:
                assert value == [item[key] for item in items], key


def test_score_training_labels(datasets):
    cfg = small_config(samples_per_epoch=40, stage="score")
    dataset = make_dataset(cfg, datasets)
    labels = [float(dataset[i]["label"]) for i in range(len(dataset))]
    assert set(labels) == {0.0, 1.0}


def test_jitter_statistics():
    spec = CropSpec(factor=4.0, output_size=64, center_jitter=3.0, scale_jitter=0.25)
    box = np.array([100.0, 50.0, 40.0, 10.0])
    rng = np.random.default_rng(0)
    jittered = np.stack([jitter_box_xywh(rng, box, spec) for _ in range(4000)])
    log_scale = np.log(jittered[:, 2:] / box[2:])
    assert np.abs(log_scale.mean(axis=0)).max() < 0.02
    assert np.abs(log_scale.std(axis=0) - 0.25).max() < 0.02
    offset = jittered[:, :2] + jittered[:, 2:] / 2 - (box[:2] + box[2:] / 2)
    bound = np.sqrt(jittered[:, 2] * jittered[:, 3]) * spec.center_jitter / 2
    assert (np.abs(offset) <= bound[:, None]).all()
    # uniform within the bound: |offset| / bound ~ U(0, 1), mean 1/2
    assert abs((np.abs(offset) / bound[:, None]).mean() - 0.5) < 0.02
    no_jitter = CropSpec(factor=2.0, output_size=32)
    np.testing.assert_array_equal(jitter_box_xywh(rng, box, no_jitter), box)


def test_search_box_offset_bounded_by_center_jitter_and_templates_unjittered(datasets):
    cfg = small_config(samples_per_epoch=60, search_center_jitter=3.0, search_scale_jitter=0.3, crop_flip_prob=0.0,
                       flip_prob=0.0)
    dataset = make_dataset(cfg, datasets)
    log_sizes = []
    for i in range(len(dataset)):
        item = dataset[i]
        box = item["search_box_xywh_norm"].double().numpy()
        offset = box[:2] + box[2:] / 2 - (SEARCH - 1) / (2 * SEARCH)
        # |c_gt - c_jit| <= sqrt(w'h') * cj / 2 and the crop side is ceil(sqrt(w'h') * factor)
        assert (np.abs(offset) <= cfg.data.search_center_jitter / (2 * cfg.data.search_factor) + 1e-6).all()
        log_sizes.append(0.5 * math.log(box[2] * box[3] * cfg.data.search_factor ** 2))
        for template_box in item["template_boxes_xywh_norm"].double().numpy():
            # no template jitter: the box sits at the crop centre and measures w / ceil(sqrt(wh) * 2)
            np.testing.assert_allclose(template_box[:2] + template_box[2:] / 2, (TEMPLATE - 1) / (2 * TEMPLATE),
                                       atol=1e-6)
            assert math.sqrt(template_box[2] * template_box[3]) * cfg.data.template_factor <= 1 + 1e-6
    # sqrt(w_norm h_norm) * factor ~ sqrt(wh) / sqrt(w'h') = exp(-(n1 + n2) s / 2): std s / sqrt(2)
    assert 0.5 * 0.3 / math.sqrt(2) < np.std(log_sizes) < 1.6 * 0.3 / math.sqrt(2)


def test_flip_box_hand_computed():
    np.testing.assert_array_equal(flip_box_xywh(np.array([10.0, 5.0, 20.0, 8.0]), WIDTH), [33, 5, 20, 8])


def test_joint_transform_flip_and_gray():
    image = np.random.default_rng(0).integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_joint_transform(image, gray=False, flip=True), image[:, ::-1])
    gray = _joint_transform(image, gray=True, flip=False)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_crop_flip_mirrors_image_and_box(datasets):
    seq = datasets["video"][0]
    sample = TripletSample((FrameRef("video", seq, 3), FrameRef("video", seq, 0)), FrameRef("video", seq, 10))
    frames = read_sample_frames(sample)
    outputs = []
    for crop_flip in (0.0, 1.0):
        processing = TripletProcessing(CropSpec(2.0, TEMPLATE), CropSpec(4.0, SEARCH, 3.0, 0.3), gray_prob=0.0,
                                       flip_prob=0.0, crop_flip_prob=crop_flip)
        outputs.append(processing(np.random.default_rng(11), sample, frames))
    plain, flipped = outputs
    assert torch.equal(flipped["search_image"], plain["search_image"].flip(-1))
    assert torch.equal(flipped["template_images"], plain["template_images"].flip(-1))
    box = plain["search_box_xywh_norm"]
    mirrored = torch.stack([1 - box[0] - box[2], box[1], box[2], box[3]])
    torch.testing.assert_close(flipped["search_box_xywh_norm"], mirrored)


def test_hand_computed_template_crop(tmp_path):
    seq = write_sequence(tmp_path, "png", [[20, 10, 16, 16]], ext=".png")
    frame = cv2.cvtColor(cv2.imread(str(seq.frame_paths[0])), cv2.COLOR_BGR2RGB)
    ref = FrameRef("video", seq, 0)
    processing = TripletProcessing(CropSpec(2.0, 32), CropSpec(2.0, 32), gray_prob=0.0, flip_prob=0.0,
                                   brightness_jitter=0.0, crop_flip_prob=0.0)
    out = processing(np.random.default_rng(0), TripletSample((ref,), ref), read_sample_frames(TripletSample((ref,),
                                                                                                           ref)))
    # side = ceil(sqrt(16 * 16) * 2) = 32 = output size (no resampling); centre (28, 18) -> origin (12, 2)
    expected = normalize_image(frame[2:34, 12:44], IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(out["template_images"][0], expected)
    # box centre at (32 - 1) / 2 crop pixels, size 16: x = y = (15.5 - 8) / 32, w = h = 0.5
    torch.testing.assert_close(out["template_boxes_xywh_norm"][0], torch.tensor([0.234375, 0.234375, 0.5, 0.5]))


def test_missing_and_corrupt_frames_are_skipped_and_counted(datasets, tmp_path, caplog):
    missing = write_sequence(tmp_path, "missing", moving_boxes(24))
    for path in missing.frame_paths:
        path.unlink()
    corrupt = write_sequence(tmp_path, "corrupt", moving_boxes(24))
    for path in corrupt.frame_paths:
        path.write_bytes(b"not a jpeg")
    data = {"video": datasets["video"], "images": [missing, corrupt]}
    cfg = small_config(samples_per_epoch=12, train_ratios=(1.0, 1.0))
    dataset = make_dataset(cfg, data)
    with caplog.at_level(logging.WARNING, logger="mixformerv2.data.pipeline"):
        items = [dataset[i] for i in range(len(dataset))]
    assert all(item["dataset"] == "video" for item in items)
    assert dataset.counts["skipped_io"] == sum(int(item["skipped_io"]) for item in items) > 0
    assert dataset.counts["skipped_invalid"] == 0
    assert "frame file is missing" in caplog.text and "cannot be decoded" in caplog.text
    assert str(tmp_path) in caplog.text
    # only bad sequences: a clear error after max_failures consecutive failures, not an endless loop
    bad_only = TrackingTrainDataset(FrameSampler({"bad": [missing, corrupt]}, {"bad": 1.0}),
                                    TripletProcessing.from_config(cfg), 4, max_failures=5)
    with pytest.raises(RuntimeError, match="5 consecutive draws failed"):
        bad_only[0]


def test_all_padding_crops_are_redrawn_and_counted_separately(datasets, tmp_path):
    outside = write_sequence(tmp_path, "outside", [[10, 10, 8, 8]] * 24)
    far_away = Sequence("outside", "video", outside.frame_paths, np.tile([500.0, 400.0, 8.0, 8.0], (24, 1)),
                        outside.visible)
    cfg = small_config(samples_per_epoch=12)
    dataset = make_dataset(cfg, {"video": datasets["video"] + [far_away], "images": datasets["images"]})
    items = [dataset[i] for i in range(len(dataset))]
    assert all(item["sequence"] != "outside" for item in items)
    assert dataset.counts["skipped_invalid"] > 0 and dataset.counts["skipped_io"] == 0
    loader = build_train_loader(cfg, {"video": datasets["video"] + [far_away], "images": datasets["images"]},
                                batch_size=4, num_workers=0)
    for _ in loader:
        pass
    assert loader.counts["skipped_invalid"] == dataset.counts["skipped_invalid"]
