"""Training frame sampling: which frames of which sequences make one (templates, search) sample.

Semantics follow the official ``TrackingSampler`` (official_spec §3.8): a dataset is drawn by ratio, a sequence
uniformly, re-drawn until it has enough visible frames; then template and search frame ids are drawn in the
``causal`` or ``trident_pro`` manner. For score-head training a sample is positive with probability
``positive_prob``, otherwise its search frame is a negative (an invisible frame of the same sequence, boxed by a
centre box, or any frame of another sequence).

All randomness flows through an explicit ``np.random.Generator``. ``sample_generator(seed, epoch, index)`` gives
the generator of one sample of an epoch, so a sample depends only on (seed, epoch, index): not on the number of
DataLoader workers, nor on which rank draws it. ``rank_indices`` splits an epoch's indices across DDP ranks.

A dataset is any list-like of ``Sequence`` (``len`` and ``__getitem__``). A sequence of a single frame (COCO) is an
image sequence: it is always accepted and all its frame ids are 0.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, Protocol

import numpy as np

from ..config.schema import SAMPLER_MODES
from .sequence import Sequence

logger = logging.getLogger(__name__)

GAP_INCREASE = 5  # frames the causal window grows by after each failed draw
MIN_VIDEO_LENGTH = 20  # shorter video sequences are never drawn
MAX_SEQUENCE_DRAWS = 1000  # give up (SamplingError) after this many rejected sequences in a row
MAX_ID_DRAWS = 1000  # give up on one sequence (InvalidSample) after this many failed frame-id draws


class InvalidSample(Exception):
    """A drawn sample cannot be used (no frame ids found, box too small, crop all padding); draw another."""


class SamplingError(RuntimeError):
    """Sampling cannot succeed at all (e.g. no sequence of a dataset has enough visible frames)."""


class SequenceSource(Protocol):
    """What the sampler needs from a dataset: a list-like of ``Sequence``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sequence: ...


@dataclass(frozen=True)
class FrameRef:
    """One frame to read: ``sequence.frame_paths[frame_id]``, annotated by ``sequence.gt_xywh[frame_id]``.

    center_box: the frame is a negative whose box is replaced by the centre box of the template frame (§3.8).
    """

    dataset: str
    sequence: Sequence
    frame_id: int
    center_box: bool = False

    @property
    def path(self):
        return self.sequence.frame_paths[self.frame_id]

    @property
    def box_xywh(self) -> np.ndarray:
        """(4,) float64 frame pixels; NaN where the frame is not annotated."""
        return self.sequence.gt_xywh[self.frame_id]


@dataclass(frozen=True)
class TripletSample:
    """Frames of one training sample: ``templates`` (template 0 first), one ``search`` frame, and the score label
    (1 = the search frame shows the templates' target, 0 = negative)."""

    templates: tuple[FrameRef, ...]
    search: FrameRef
    label: int = 1


# ---------------------------------------------------------------------------------------------------------------
# Seeds and the DDP split


def sample_generator(seed: int, epoch: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator of sample ``index`` of ``epoch``: a pure function of its arguments (PCG64 via SeedSequence)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index), int(attempt)]))


def epoch_length(samples_per_epoch: int, world_size: int = 1) -> int:
    """Samples in one epoch over all ranks: ``samples_per_epoch`` rounded up to a multiple of ``world_size`` so every
    rank draws the same number (unequal shares would hang DDP)."""
    if samples_per_epoch < 1 or world_size < 1:
        raise ValueError(f"samples_per_epoch ({samples_per_epoch}) and world_size ({world_size}) must be >= 1")
    return math.ceil(samples_per_epoch / world_size) * world_size


def rank_indices(samples_per_epoch: int, rank: int = 0, world_size: int = 1) -> range:
    """Global sample indices drawn by ``rank``: ``rank, rank + world_size, ...``. The ranks' sets are disjoint and
    together cover ``range(epoch_length(samples_per_epoch, world_size))``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return range(rank, epoch_length(samples_per_epoch, world_size), world_size)


# ---------------------------------------------------------------------------------------------------------------
# Frame ids within one sequence


def sample_frame_ids(rng: np.random.Generator, visible: np.ndarray, k: int, min_id: int | None = None,
                     max_id: int | None = None, allow: str = "visible") -> list[int] | None:
    """Draw ``k`` frame ids WITH replacement from [min_id, max_id) (clamped to the sequence).

    allow: ``"visible"`` (only visible frames), ``"any"`` or ``"invisible"`` (only frames where the target is not
    visible). Returns None when no frame qualifies; ``[]`` when ``k == 0``.
    """
    if k == 0:
        return []
    n = len(visible)
    lo = 0 if min_id is None else max(0, int(min_id))
    hi = n if max_id is None else min(n, int(max_id))
    if hi <= lo:
        return None
    if allow == "any":
        return [int(i) for i in rng.integers(lo, hi, size=k)]
    window = visible[lo:hi]
    if allow == "visible":
        candidates = np.flatnonzero(window)
    elif allow == "invisible":
        candidates = np.flatnonzero(~window)
    else:
        raise ValueError(f"allow must be 'visible', 'any' or 'invisible', not {allow!r}")
    if candidates.size == 0:
        return None
    return [int(lo + candidates[i]) for i in rng.integers(0, candidates.size, size=k)]


def causal_frame_ids(rng: np.random.Generator, visible: np.ndarray, num_templates: int,
                     max_gap: int) -> tuple[list[int], list[int]]:
    """``causal`` mode (§3.8): template 0 = a base frame, templates 1.. from [base - gap, base), the search frame from
    [base + 1, base + gap); all visible. ``gap`` starts at ``max_gap`` and grows by 5 after each failed draw.

    Returns (template ids, [search id]); raises InvalidSample after ``MAX_ID_DRAWS`` failed draws.
    """
    gap_increase = 0
    for _ in range(MAX_ID_DRAWS):
        base = sample_frame_ids(rng, visible, 1, min_id=num_templates - 1, max_id=len(visible) - 1)
        if base is None:
            break
        prev = sample_frame_ids(rng, visible, num_templates - 1, min_id=base[0] - max_gap - gap_increase,
                                max_id=base[0])
        if prev is None:
            gap_increase += GAP_INCREASE
            continue
        search = sample_frame_ids(rng, visible, 1, min_id=base[0] + 1, max_id=base[0] + max_gap + gap_increase)
        gap_increase += GAP_INCREASE
        if search is not None:
            return base + prev, search
    raise InvalidSample(f"causal sampling found no frame ids ({int(visible.sum())} visible of {len(visible)})")


def trident_pro_frame_ids(rng: np.random.Generator, visible: np.ndarray, num_templates: int,
                          max_gap: int) -> tuple[list[int], list[int]]:
    """``trident_pro`` mode (§3.8): template 0 and the search frame ``s`` are any visible frames; each further
    template is any frame (invisible allowed) of [s, s + gap) when template 0 is not before ``s``, else of
    [s - gap, s). Returns (template ids, [search id])."""
    for _ in range(MAX_ID_DRAWS):
        first = sample_frame_ids(rng, visible, 1)
        search = sample_frame_ids(rng, visible, 1)
        if first is None or search is None:
            break
        s = search[0]
        lo, hi = (s, s + max_gap) if first[0] >= s else (s - max_gap, s)
        extra = [sample_frame_ids(rng, visible, 1, min_id=lo, max_id=hi, allow="any") for _ in
                 range(num_templates - 1)]
        if all(e is not None for e in extra):
            return first + [e[0] for e in extra], search
    raise InvalidSample(f"trident_pro sampling found no frame ids ({int(visible.sum())} visible of {len(visible)})")


_FRAME_ID_FUNCTIONS = {"causal": causal_frame_ids, "trident_pro": trident_pro_frame_ids}


def center_box_xywh(height: int, width: int, ratio: float = 1 / 8) -> np.ndarray:
    """The negative-sample box (§3.8): ``ratio`` of the frame size at its centre, truncated to ints. (4,) float64."""
    cx, cy, w, h = width / 2, height / 2, width * ratio, height * ratio
    return np.array([int(cx - w / 2), int(cy - h / 2), int(w), int(h)], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# The sampler


class _SequenceCache:
    """A small per-process LRU of ``dataset[i]`` (readers may parse annotation files on every access)."""

    def __init__(self, dataset: SequenceSource, capacity: int = 256):
        self.dataset = dataset
        self.capacity = capacity
        self._items: OrderedDict[int, Sequence] = OrderedDict()

    def __getitem__(self, index: int) -> Sequence:
        seq = self._items.get(index)
        if seq is None:
            seq = self.dataset[index]
            self._items[index] = seq
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(index)
        return seq

    def __getstate__(self):  # DataLoader workers start with an empty cache
        return {"dataset": self.dataset, "capacity": self.capacity, "_items": OrderedDict()}


class FrameSampler:
    """Draws ``TripletSample``s from a mixture of datasets.

    Args:
        datasets: name -> list-like of ``Sequence``.
        ratios: name -> relative sampling weight (normalised; the official mixture is uniform over datasets, not
            proportional to their size). Names missing here get weight 0.
        mode: ``"causal"`` or ``"trident_pro"``.
        num_templates: template frames per sample (2: the template and the online template).
        max_gap: frame window of §3.8 (200).
        score_training: draw positives/negatives with labels; otherwise every sample is positive (label 1).
        positive_prob: probability of a positive sample in score training.
    """

    num_search = 1

    def __init__(self, datasets: Mapping[str, SequenceSource], ratios: Mapping[str, float], mode: str = "causal",
                 num_templates: int = 2, max_gap: int = 200, score_training: bool = False,
                 positive_prob: float = 0.5):
        if mode not in SAMPLER_MODES:
            raise ValueError(f"sampler mode must be one of {SAMPLER_MODES}, not {mode!r}")
        if num_templates < 1:
            raise ValueError(f"num_templates must be >= 1, not {num_templates}")
        unknown = sorted(set(ratios) - set(datasets))
        if unknown:
            raise ValueError(f"ratios name datasets that were not given: {unknown}")
        self.names = list(datasets)
        weights = np.array([float(ratios.get(name, 0.0)) for name in self.names])
        if len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"dataset ratios must be >= 0 with a positive sum, got {dict(ratios)}")
        for name in self.names:
            if len(datasets[name]) == 0:
                raise ValueError(f"training dataset {name!r} has no sequences")
        self.probs = weights / weights.sum()
        self._sources = {name: _SequenceCache(datasets[name]) for name in self.names}
        self._sizes = {name: len(datasets[name]) for name in self.names}
        self.mode = mode
        self.num_templates = num_templates
        self.max_gap = max_gap
        self.score_training = score_training
        self.positive_prob = positive_prob
        self._min_visible = 2 * (self.num_search + num_templates)

    # -- sequences ------------------------------------------------------------------------------------------------

    def _accepts(self, seq: Sequence) -> bool:
        """Image sequences always; videos with > 2 * (search + templates) visible frames and >= 20 frames."""
        if len(seq) == 1:
            return True
        return len(seq) >= MIN_VIDEO_LENGTH and int(np.count_nonzero(seq.visible)) > self._min_visible

    def draw_sequence(self, rng: np.random.Generator) -> tuple[str, Sequence]:
        """A dataset by ratio, then a sequence uniformly, re-drawn until ``_accepts`` it."""
        name = self.names[int(rng.choice(len(self.names), p=self.probs))]
        source, size = self._sources[name], self._sizes[name]
        for _ in range(MAX_SEQUENCE_DRAWS):
            seq = source[int(rng.integers(size))]
            if self._accepts(seq):
                return name, seq
        raise SamplingError(f"dataset {name!r}: {MAX_SEQUENCE_DRAWS} sequences drawn in a row, none has >= "
                            f"{MIN_VIDEO_LENGTH} frames and > {self._min_visible} visible frames")

    # -- samples --------------------------------------------------------------------------------------------------

    def frame_ids(self, rng: np.random.Generator, seq: Sequence) -> tuple[list[int], list[int]]:
        """(template ids, [search id]) of one sequence in the sampler's mode; all 0 for an image sequence."""
        if len(seq) == 1:
            return [0] * self.num_templates, [0]
        return _FRAME_ID_FUNCTIONS[self.mode](rng, seq.visible, self.num_templates, self.max_gap)

    def sample(self, rng: np.random.Generator) -> TripletSample:
        """One sample; raises InvalidSample when the drawn sequence yields no frame ids (the caller re-draws)."""
        name, seq = self.draw_sequence(rng)
        template_ids, search_ids = self.frame_ids(rng, seq)
        templates = tuple(FrameRef(name, seq, i) for i in template_ids)
        if not self.score_training or rng.random() < self.positive_prob:
            return TripletSample(templates, FrameRef(name, seq, search_ids[0]), label=1)
        return TripletSample(templates, self._negative_search(rng, name, seq), label=0)

    def _negative_search(self, rng: np.random.Generator, name: str, seq: Sequence) -> FrameRef:
        """An invisible frame of ``seq`` with the centre box; else (and for images) a frame of another sequence."""
        if len(seq) > 1:
            ids = sample_frame_ids(rng, seq.visible, 1, allow="invisible")
            if ids is not None:
                return FrameRef(name, seq, ids[0], center_box=True)
        other_name, other = self.draw_sequence(rng)
        if len(other) == 1:
            return FrameRef(other_name, other, 0)
        return FrameRef(other_name, other, sample_frame_ids(rng, other.visible, 1, allow="any")[0])
