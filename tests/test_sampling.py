"""Frame sampling (official_spec §3.8): seeds, DDP split, causal / trident_pro rules, negatives, mixture."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mixformerv2.data.sampling import (FrameSampler, InvalidSample, SamplingError, causal_frame_ids,
                                       center_box_xywh, epoch_length, rank_indices, sample_frame_ids,
                                       sample_generator, trident_pro_frame_ids)
from mixformerv2.data.sequence import Sequence


def make_sequence(name: str, visible, dataset: str = "video") -> Sequence:
    """A sequence with fake frame paths (sampling never reads files) and a fixed box on visible frames."""
    visible = np.asarray(visible, dtype=bool)
    gt = np.tile([10.0, 10.0, 20.0, 20.0], (len(visible), 1))
    gt[~visible] = np.nan
    paths = tuple(Path(f"/nonexistent/{dataset}/{name}/{i:08d}.jpg") for i in range(len(visible)))
    return Sequence(name, dataset, paths, gt, visible)


def every_other_invisible(n: int) -> np.ndarray:
    visible = np.ones(n, dtype=bool)
    visible[1::4] = False
    return visible


@pytest.fixture
def datasets():
    video = [make_sequence(f"v{i}", every_other_invisible(60 + 10 * i)) for i in range(4)]
    images = [make_sequence(f"img{i}", [True], dataset="images") for i in range(3)]
    return {"video": video, "images": images}


def draw(sampler: FrameSampler, seed: int, epoch: int, index: int):
    return sampler.sample(sample_generator(seed, epoch, index))


def ids(sample):
    return ([(r.sequence.name, r.frame_id) for r in sample.templates], (sample.search.sequence.name,
                                                                       sample.search.frame_id), sample.label)


def test_same_seed_same_ids_and_different_seed_differs(datasets):
    sampler = FrameSampler(datasets, {"video": 1.0, "images": 1.0}, mode="causal")
    first = [ids(draw(sampler, 7, 2, i)) for i in range(20)]
    again = [ids(draw(FrameSampler(datasets, {"video": 1.0, "images": 1.0}), 7, 2, i)) for i in range(20)]
    other = [ids(draw(sampler, 8, 2, i)) for i in range(20)]
    assert first == again
    assert first != other


@pytest.mark.parametrize("samples, world_size", [(10, 1), (10, 3), (12, 4), (7, 2)])
def test_rank_split_is_disjoint_and_covers_the_epoch(samples, world_size):
    shares = [set(rank_indices(samples, r, world_size)) for r in range(world_size)]
    total = epoch_length(samples, world_size)
    assert total >= samples and total % world_size == 0 and total - samples < world_size
    assert sum(len(s) for s in shares) == total
    assert set().union(*shares) == set(range(total))
    assert len({len(s) for s in shares}) == 1  # equal shares: no DDP hang
    with pytest.raises(ValueError):
        rank_indices(samples, world_size, world_size)


def test_sample_frame_ids_modes():
    rng = np.random.default_rng(0)
    visible = np.array([False, True, False, True, False, False])
    assert set(sample_frame_ids(rng, visible, 200)) == {1, 3}
    assert set(sample_frame_ids(rng, visible, 200, allow="invisible")) == {0, 2, 4, 5}
    assert set(sample_frame_ids(rng, visible, 200, allow="any")) == set(range(6))
    assert set(sample_frame_ids(rng, visible, 100, min_id=-5, max_id=3)) == {1}  # clamped window
    assert sample_frame_ids(rng, visible, 1, min_id=4, max_id=99) is None
    assert sample_frame_ids(rng, visible, 1, min_id=3, max_id=3) is None
    assert sample_frame_ids(rng, visible, 0) == []


def test_causal_rules_over_many_draws():
    visible = every_other_invisible(300)
    max_gap = 30
    for i in range(300):
        (t0, t1), (s,) = causal_frame_ids(sample_generator(0, 0, i), visible, 2, max_gap)
        assert visible[[t0, t1, s]].all()
        assert t1 < t0 < s  # template 0 is the later (base) frame, template 1 an earlier one
        assert 1 <= t0 < len(visible) - 1
        # dense visibility: the first draw always succeeds, so the gap has not grown
        assert t0 - t1 <= max_gap and s - t0 < max_gap


def test_causal_gap_grows_by_five_until_frames_are_found():
    visible = np.zeros(100, dtype=bool)
    visible[[0, 40, 80]] = True
    # base must be 40 (80 has nothing after it); prev = 0 and search = 80 need the gap to grow from 10 to >= 40
    templates, search = causal_frame_ids(np.random.default_rng(3), visible, 2, 10)
    assert templates == [40, 0] and search == [80]


def test_causal_gives_up_with_invalid_sample():
    visible = np.zeros(30, dtype=bool)
    visible[-1] = True  # the only visible frame cannot be a base frame
    with pytest.raises(InvalidSample):
        causal_frame_ids(np.random.default_rng(0), visible, 2, 200)


def test_trident_pro_window_rules():
    visible = every_other_invisible(400)
    max_gap = 50
    extras_invisible = 0
    for i in range(400):
        (t0, extra), (s,) = trident_pro_frame_ids(sample_generator(1, 0, i), visible, 2, max_gap)
        assert visible[t0] and visible[s]
        if t0 >= s:
            assert s <= extra < s + max_gap
        else:
            assert s - max_gap <= extra < s
        extras_invisible += not visible[extra]
    assert extras_invisible > 0  # the online template may be an invisible frame in trident_pro


def test_image_sequences_use_frame_zero(datasets):
    sampler = FrameSampler({"images": datasets["images"]}, {"images": 1.0}, mode="trident_pro")
    sample = draw(sampler, 0, 0, 0)
    assert [r.frame_id for r in sample.templates] == [0, 0] and sample.search.frame_id == 0


def test_sequences_without_enough_visible_frames_are_never_drawn():
    short = make_sequence("short", np.ones(19, dtype=bool))
    sparse_visible = np.zeros(100, dtype=bool)
    sparse_visible[:6] = True  # 6 visible frames: not > 2 * (1 + 2)
    sparse = make_sequence("sparse", sparse_visible)
    good = make_sequence("good", np.ones(40, dtype=bool))
    sampler = FrameSampler({"video": [short, sparse, good]}, {"video": 1.0})
    assert {draw(sampler, 0, 0, i).templates[0].sequence.name for i in range(50)} == {"good"}
    with pytest.raises(SamplingError, match="video"):
        draw(FrameSampler({"video": [short, sparse]}, {"video": 1.0}), 0, 0, 0)


def test_dataset_ratios(datasets):
    only_video = FrameSampler(datasets, {"video": 1.0, "images": 0.0})
    assert {draw(only_video, 0, 0, i).templates[0].dataset for i in range(50)} == {"video"}
    mixed = FrameSampler(datasets, {"video": 3.0, "images": 1.0})
    counts = Counter(draw(mixed, 0, 0, i).templates[0].dataset for i in range(2000))
    assert 0.70 < counts["video"] / 2000 < 0.80
    with pytest.raises(ValueError):
        FrameSampler(datasets, {"video": 1.0, "nope": 1.0})


def test_negatives_are_invisible_frames_or_other_sequences(datasets):
    all_visible = make_sequence("clean", np.ones(50, dtype=bool))
    data = {"video": datasets["video"] + [all_visible], "images": datasets["images"]}
    sampler = FrameSampler(data, {"video": 1.0, "images": 1.0}, mode="trident_pro", score_training=True,
                           positive_prob=0.5)
    labels = Counter()
    kinds = Counter()
    for i in range(1000):
        sample = draw(sampler, 0, 0, i)
        labels[sample.label] += 1
        template_seq, search = sample.templates[0].sequence, sample.search
        if sample.label == 1:
            assert search.sequence is template_seq and search.sequence.visible[search.frame_id]
            continue
        if search.center_box:
            assert search.sequence is template_seq and not search.sequence.visible[search.frame_id]
            kinds["invisible"] += 1
        else:
            # no invisible frame in the template sequence (or an image): a frame of a random sequence
            assert len(template_seq) == 1 or template_seq.visible.all()
            kinds["other"] += 1
    assert 0.45 < labels[1] / 1000 < 0.55 and labels[0] > 0
    assert kinds["invisible"] > 0 and kinds["other"] > 0


def test_without_score_training_every_sample_is_positive(datasets):
    sampler = FrameSampler(datasets, {"video": 1.0, "images": 1.0}, score_training=False)
    assert all(draw(sampler, 0, 0, i).label == 1 for i in range(50))


def test_center_box_hand_computed():
    # 64 x 48 frame: an 8 x 6 box centred at (32, 24)
    np.testing.assert_array_equal(center_box_xywh(48, 64), [28, 21, 8, 6])
    # truncation to ints: W = 50 -> w = 6.25 -> 6, x = int(25 - 3.125) = 21
    np.testing.assert_array_equal(center_box_xywh(30, 50), [21, 13, 6, 3])
