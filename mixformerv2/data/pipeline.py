"""Training pipeline: sample -> read frames -> augment -> crop -> tensors, and the DataLoader around it.

Order of operations (official_spec §3.9): a grayscale and a horizontal flip rolled once for all frames of a sample;
per crop a centre/scale jitter of the box, the square crop of ``crop.py`` (zero padding outside the frame), the
ground truth mapped into the crop, a brightness jitter and an independent horizontal flip (the official quirk,
``crop_flip_prob``), then ``normalize_image``. Crops that are all padding are rejected (§3.9f).

A failed draw is re-drawn deterministically (a fresh generator per attempt) and counted: missing or corrupt
frames (``OSError``, logged with the file name) separately from invalid samples (``InvalidSample``).

The batch dict (``TrackingTrainDataset`` items stacked by the DataLoader on a new first axis of size B; T =
``data.num_templates``, Hz = ``model.template_size``, Hx = ``model.search_size``):

=========================== =================== ======= ===================================================
key                         shape               dtype   content
=========================== =================== ======= ===================================================
template_images             (B, T, 3, Hz, Hz)   float32 template crops, RGB normalised with ``model.image_mean``
                                                        / ``model.image_std``; index 0 is the initial template
search_image                (B, 3, Hx, Hx)      float32 search crop, normalised the same way
template_boxes_xywh_norm    (B, T, 4)           float32 target in each template crop: x, y (top-left), w, h
                                                        divided by the crop side Hz (in [0, 1] when inside)
search_box_xywh_norm        (B, 4)              float32 target in the search crop: x, y, w, h / Hx
label                       (B,)                float32 1 positive, 0 negative (score training)
template_frame_ids          (B, T)              int64   0-based frame index of each template
search_frame_id             (B,)                int64   0-based frame index of the search frame
index                       (B,)                int64   global sample index within the epoch
skipped_io                  (B,)                int64   draws skipped for missing/corrupt frames before this one
skipped_invalid             (B,)                int64   draws skipped as invalid samples before this one
dataset, sequence           list of B str               dataset name and sequence of the templates
search_dataset,             list of B str               the same for the search frame (another sequence for a
search_sequence                                         negative sample)
=========================== =================== ======= ===================================================
"""
from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Mapping

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Config
from ..crop import box_to_crop_norm, crop_square_xywh
from ..imaging import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from .names import root_keys
from .registry import get_dataset
from .sampling import (FrameRef, FrameSampler, InvalidSample, SequenceSource, TripletSample, center_box_xywh,
                       rank_indices, sample_generator)
from .sequence import read_frame_rgb

logger = logging.getLogger(__name__)

FEATURE_STRIDE = 16  # the validity check also rejects crops whose 1/16 nearest-downsampled mask is all padding


@dataclass(frozen=True)
class CropSpec:
    """How one crop is cut: context ``factor``, output side in pixels, centre and scale jitter (0 = none)."""

    factor: float
    output_size: int
    center_jitter: float = 0.0
    scale_jitter: float = 0.0


def jitter_box_xywh(rng: np.random.Generator, box_xywh: np.ndarray, spec: CropSpec) -> np.ndarray:
    """§3.9a: ``wh' = wh * exp(N(0, 1) * scale_jitter)`` per side, then the centre moves by up to
    ``sqrt(w' h') * center_jitter / 2`` per axis (uniform). Returns (4,) float64 xywh frame pixels."""
    if spec.center_jitter == 0 and spec.scale_jitter == 0:
        return np.asarray(box_xywh, dtype=np.float64)
    wh = box_xywh[2:4] * np.exp(rng.standard_normal(2) * spec.scale_jitter)
    max_offset = math.sqrt(wh[0] * wh[1]) * spec.center_jitter
    center = box_xywh[0:2] + 0.5 * box_xywh[2:4] + max_offset * (rng.random(2) - 0.5)
    return np.concatenate([center - 0.5 * wh, wh])


def flip_box_xywh(box_xywh: np.ndarray, width: float) -> np.ndarray:
    """Horizontal flip of a frame box: both corners x -> (W - 1) - x (pixel frames, §3.9.1)."""
    x, y, w, h = box_xywh
    return np.array([width - 1 - x - w, y, w, h], dtype=np.float64)


def _mask_all_padding(mask: np.ndarray) -> bool:
    """§3.9f: the crop mask (True = padding) or its nearest-downsample to ``side // 16`` is entirely padding."""
    if mask.all():
        return True
    side = mask.shape[0]
    feat = side // FEATURE_STRIDE
    if feat < 1:
        return False
    idx = np.minimum(np.floor(np.arange(feat) * (side / feat)).astype(np.int64), side - 1)
    return bool(mask[np.ix_(idx, idx)].all())


class TripletProcessing:
    """Turns the frames of a ``TripletSample`` into normalised crops and crop-normalised boxes.

    Args:
        template, search: crop specifications.
        mean, std: RGB normalisation of ``normalize_image`` (``model.image_mean``/``image_std`` in ``from_config``).
        gray_prob, flip_prob: joint grayscale / horizontal flip probabilities (one roll per sample).
        brightness_jitter: per-crop brightness factor ~ U(max(0, 1 - b), 1 + b).
        crop_flip_prob: per-crop independent horizontal flip probability (0.5 official; 0 disables).
    """

    def __init__(self, template: CropSpec, search: CropSpec, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 gray_prob: float = 0.05, flip_prob: float = 0.5, brightness_jitter: float = 0.2,
                 crop_flip_prob: float = 0.5):
        self.template, self.search = template, search
        self.mean, self.std = tuple(mean), tuple(std)
        self.gray_prob, self.flip_prob = gray_prob, flip_prob
        self.brightness_jitter, self.crop_flip_prob = brightness_jitter, crop_flip_prob

    @classmethod
    def from_config(cls, cfg: Config) -> "TripletProcessing":
        d = cfg.data
        return cls(
            template=CropSpec(d.template_factor, cfg.model.template_size, d.template_center_jitter,
                              d.template_scale_jitter),
            search=CropSpec(d.search_factor, cfg.model.search_size, d.search_center_jitter, d.search_scale_jitter),
            mean=cfg.model.image_mean, std=cfg.model.image_std, gray_prob=d.gray_prob, flip_prob=d.flip_prob,
            brightness_jitter=d.brightness_jitter, crop_flip_prob=d.crop_flip_prob)

    def __call__(self, rng: np.random.Generator, sample: TripletSample,
                 frames: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """frames: path -> (H, W, 3) uint8 RGB for every frame of ``sample`` (not modified).

        Returns ``template_images (T, 3, Hz, Hz)``, ``search_image (3, Hx, Hx)`` float32 normalised RGB,
        ``template_boxes_xywh_norm (T, 4)``, ``search_box_xywh_norm (4,)`` float32 xywh / crop side (see the module
        docstring). Raises InvalidSample.
        """
        gray = rng.random() < self.gray_prob
        flip = rng.random() < self.flip_prob
        joint = {path: _joint_transform(image, gray, flip) for path, image in frames.items()}
        template_shape = frames[str(sample.templates[0].path)].shape
        templates = [self._crop(rng, joint, ref, self.template, flip, template_shape) for ref in sample.templates]
        search_image, search_box = self._crop(rng, joint, sample.search, self.search, flip, template_shape)
        return {
            "template_images": torch.stack([image for image, _ in templates]),
            "search_image": search_image,
            "template_boxes_xywh_norm": torch.from_numpy(np.stack([box for _, box in templates])).float(),
            "search_box_xywh_norm": torch.from_numpy(search_box).float(),
        }

    def _crop(self, rng: np.random.Generator, frames: Mapping[str, np.ndarray], ref: FrameRef, spec: CropSpec,
              flipped: bool, template_shape: tuple) -> tuple[torch.Tensor, np.ndarray]:
        """One crop: (3, S, S) float32 normalised image and (4,) float64 normalised xywh box."""
        image = frames[str(ref.path)]
        box = center_box_xywh(*template_shape[:2]) if ref.center_box else np.asarray(ref.box_xywh, np.float64)
        if not (np.isfinite(box).all() and box[2] > 0 and box[3] > 0):
            raise InvalidSample(f"{ref.path}: no usable box ({box.tolist()})")
        if flipped:
            box = flip_box_xywh(box, image.shape[1])
        jittered = jitter_box_xywh(rng, box, spec)
        try:
            crop = crop_square_xywh(image, jittered, spec.factor, spec.output_size)
        except ValueError as err:  # crop_side: the jittered box is too small to crop
            raise InvalidSample(f"{ref.path}: {err}") from None
        if _mask_all_padding(crop.padding_mask):
            raise InvalidSample(f"{ref.path}: crop is all padding")
        box_norm = box_to_crop_norm(box, crop, spec.output_size)
        pixels = crop.image
        brightness = rng.uniform(max(0.0, 1.0 - self.brightness_jitter), 1.0 + self.brightness_jitter)
        if rng.random() < self.crop_flip_prob:
            pixels = cv2.flip(pixels, 1)
            box_norm = np.array([1.0 - box_norm[0] - box_norm[2], box_norm[1], box_norm[2], box_norm[3]])
        return normalize_image(_brightness_hwc(pixels, brightness), self.mean, self.std), box_norm


def _brightness_hwc(pixels: np.ndarray, factor: float) -> np.ndarray:
    """(S, S, 3) uint8 -> ``min(pixels * factor, 255)`` float32, as an HWC view of a channel-first buffer so that
    ``normalize_image`` works on (and returns) contiguous (3, S, S) memory."""
    chw = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    np.multiply(pixels.transpose(2, 0, 1), np.float32(factor), out=chw)
    np.minimum(chw, np.float32(255.0), out=chw)
    return chw.transpose(1, 2, 0)


def _joint_transform(image: np.ndarray, gray: bool, flip: bool) -> np.ndarray:
    """The per-sample grayscale (kept 3-channel) and horizontal flip of a whole frame."""
    if gray:
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    if flip:
        image = cv2.flip(image, 1)
    return image


def read_sample_frames(sample: TripletSample) -> dict[str, np.ndarray]:
    """Read each distinct frame of ``sample`` once: path -> (H, W, 3) uint8 RGB. Raises OSError naming a file."""
    frames: dict[str, np.ndarray] = {}
    for ref in (*sample.templates, sample.search):
        key = str(ref.path)
        if key not in frames:
            frames[key] = read_frame_rgb(ref.path)
    return frames


class TrackingTrainDataset(Dataset):
    """Map-style dataset of one rank's share of an epoch: item ``i`` is global sample ``rank + i * world_size``.

    A sample is a pure function of (seed, epoch, global index), whatever the number of workers. Items are the
    batch dict of the module docstring without the batch axis (strings are plain ``str``). ``counts`` accumulates
    the skips of items drawn in this process.
    """

    def __init__(self, sampler: FrameSampler, processing: TripletProcessing, samples_per_epoch: int, seed: int = 0,
                 epoch: int = 0, rank: int = 0, world_size: int = 1, max_failures: int = 100):
        self.sampler, self.processing = sampler, processing
        self.indices = rank_indices(samples_per_epoch, rank, world_size)
        self.seed, self.epoch, self.max_failures = seed, epoch, max_failures
        self.counts: Counter = Counter()

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        skipped = Counter()
        last_error: Exception | None = None
        for attempt in range(self.max_failures):
            rng = sample_generator(self.seed, self.epoch, index, attempt)
            try:
                sample = self.sampler.sample(rng)
                item = self.processing(rng, sample, read_sample_frames(sample))
            except OSError as err:  # FileNotFoundError included: a missing or corrupt frame
                skipped["skipped_io"] += 1
                logger.warning("sample %d (epoch %d): %s; drawing another", index, self.epoch, err)
                last_error = err
                continue
            except InvalidSample as err:
                skipped["skipped_invalid"] += 1
                logger.debug("sample %d (epoch %d): %s; drawing another", index, self.epoch, err)
                last_error = err
                continue
            self.counts.update(skipped)
            return {**item, **_sample_info(sample, index), **{k: torch.tensor(skipped[k]) for k in
                                                              ("skipped_io", "skipped_invalid")}}
        self.counts.update(skipped)
        raise RuntimeError(f"sample {index} (epoch {self.epoch}): {self.max_failures} consecutive draws failed "
                           f"({dict(skipped)}); last error: {last_error}") from last_error


def _sample_info(sample: TripletSample, index: int) -> dict:
    template_seq = sample.templates[0]
    return {
        "label": torch.tensor(float(sample.label)),
        "template_frame_ids": torch.tensor([ref.frame_id for ref in sample.templates], dtype=torch.int64),
        "search_frame_id": torch.tensor(sample.search.frame_id, dtype=torch.int64),
        "index": torch.tensor(index, dtype=torch.int64),
        "dataset": template_seq.dataset,
        "sequence": template_seq.sequence.name,
        "search_dataset": sample.search.dataset,
        "search_sequence": sample.search.sequence.name,
    }


def load_train_datasets(cfg: Config) -> dict[str, SequenceSource]:
    """Readers of ``cfg.data.train_datasets`` (registry names), rooted at ``cfg.data.roots`` under the name, else
    under its family key (``got10k``), else where the registry's other rules say."""
    return {name: get_dataset(name, root=_root_override(cfg.data.roots, name)) for name in cfg.data.train_datasets}


def _root_override(roots: Mapping[str, str], name: str) -> str | None:
    return next((roots[key] for key in root_keys(name) if key in roots), None)


def build_sampler(cfg: Config, datasets: Mapping[str, SequenceSource]) -> FrameSampler:
    """The sampler of ``cfg.data`` over ``datasets`` (name -> list-like of Sequence); ratios by config name."""
    d = cfg.data
    if len(d.train_ratios) != len(d.train_datasets):
        raise ValueError(f"data.train_ratios has {len(d.train_ratios)} entries for {len(d.train_datasets)} "
                         f"data.train_datasets")
    missing = [name for name in d.train_datasets if name not in datasets]
    if missing:
        raise ValueError(f"data.train_datasets names {missing} but only {sorted(datasets)} were given")
    ratios = dict(zip(d.train_datasets, d.train_ratios))
    return FrameSampler({name: datasets[name] for name in d.train_datasets}, ratios, mode=d.sampler_mode,
                        num_templates=d.num_templates, max_gap=d.max_sample_interval,
                        score_training=cfg.train.stage == "score", positive_prob=d.positive_prob)


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: single-threaded cv2/torch (workers are the parallelism) and seeded global RNGs
    (torch seeds each worker from the loader's generator; our own draws never use global RNGs)."""
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class TrainLoader:
    """A DataLoader over ``TrackingTrainDataset`` that sums the per-item skip counts of the batches it yields.

    ``counts``: {"skipped_io": missing/corrupt frames, "skipped_invalid": invalid samples} of the current epoch.
    """

    def __init__(self, dataset: TrackingTrainDataset, batch_size: int, num_workers: int, seed: int = 0,
                 rank: int = 0):
        self.dataset = dataset
        self.batch_size, self.num_workers, self.seed, self.rank = batch_size, num_workers, seed, rank
        self.start_batch = 0
        self.counts: Counter = Counter()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Draw ``epoch``'s samples next (workers are re-created per epoch, so they see it), from batch
        ``start_batch`` on, and reset counts. A sample depends only on (seed, epoch, index), so starting at batch
        ``k`` (a mid-epoch resume) yields exactly the batches ``k, k + 1, ...`` of a full pass."""
        self.dataset.set_epoch(epoch)
        self.start_batch = start_batch
        self.counts = Counter()

    def _loader(self) -> DataLoader:
        state = np.random.SeedSequence([self.seed, self.dataset.epoch, self.rank]).generate_state(2, np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        return DataLoader(self.dataset, batch_size=self.batch_size, drop_last=True,
                          sampler=range(self.start_batch * self.batch_size, len(self.dataset)),
                          num_workers=self.num_workers, worker_init_fn=worker_init if self.num_workers else None,
                          generator=generator, pin_memory=torch.cuda.is_available(),
                          prefetch_factor=4 if self.num_workers else None)

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[dict]:
        for batch in self._loader():
            for key in ("skipped_io", "skipped_invalid"):
                self.counts[key] += int(batch[key].sum())
            yield batch


def build_train_loader(cfg: Config, datasets: Mapping[str, SequenceSource], rank: int = 0, world_size: int = 1,
                       epoch: int = 0, batch_size: int | None = None, num_workers: int | None = None) -> TrainLoader:
    """The training loader of one rank for ``epoch`` (``cfg.data``/``cfg.model`` sizes, ``cfg.train`` seed and
    batch size unless overridden). Batches are the dicts of the module docstring.

    torch.distributed need not be initialised: ``rank``/``world_size`` are plain arguments.
    """
    dataset = TrackingTrainDataset(build_sampler(cfg, datasets), TripletProcessing.from_config(cfg),
                                   cfg.data.samples_per_epoch, seed=cfg.train.seed, epoch=epoch, rank=rank,
                                   world_size=world_size)
    return TrainLoader(dataset, batch_size or cfg.train.batch_size_per_process,
                       cfg.data.num_workers if num_workers is None else num_workers, seed=cfg.train.seed, rank=rank)

