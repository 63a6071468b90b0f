"""MixFormerV2Tracker: golden crops and clipping through the tracker, the online-template rule, cached path."""
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mixformerv2.boxes import clip_box_xywh
from mixformerv2.config import ModelConfig
from mixformerv2.config import TestConfig as TrackerSettings
from mixformerv2.crop import box_from_crop, crop_side, crop_square_xywh
from mixformerv2.imaging import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from mixformerv2.models import build_model
from mixformerv2.tracking.tracker import MixFormerV2Tracker

GOLDEN = Path(__file__).parent / "data" / "golden" / "crops.pt"


@dataclass
class FakeOutput:
    box_xyxy_norm: torch.Tensor
    score_logit: torch.Tensor | None


class ScriptedModel(nn.Module):
    """Stand-in network: returns a scripted box/score per call and records the tensors it was given."""

    def __init__(self, box_xyxy_norm=(0.4, 0.4, 0.6, 0.6), scores=None):
        super().__init__()
        self.box = torch.tensor(box_xyxy_norm, dtype=torch.float32)
        self.scores = list(scores) if scores is not None else None
        self.encoded = []  # (template, [online...]) per encode_templates call
        self.online_seen = []  # [online...] per network step
        self.searches = []
        self.full_calls = 0

    def _step(self, template, online, search):
        online = [online] if isinstance(online, torch.Tensor) else list(online)
        self.online_seen.append(online)
        self.searches.append(search)
        i = len(self.searches) - 1
        score = None
        if self.scores is not None:
            p = torch.tensor(float(self.scores[i]), dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
            score = torch.logit(p).float().view(1)
        return FakeOutput(self.box.view(1, 4), score)

    def forward(self, template, online, search):
        self.full_calls += 1
        return self._step(template, online, search)

    def encode_templates(self, template, online):
        online = [online] if isinstance(online, torch.Tensor) else list(online)
        self.encoded.append((template, online))
        return (template, online)

    def forward_search(self, cache, search):
        return self._step(cache[0], cache[1], search)


def _test_cfg(**kw) -> TrackerSettings:
    return replace(TrackerSettings(), **kw)


def _denormalised_centre(t: torch.Tensor) -> int:
    """Pixel value at the centre of a (1, 3, S, S) normalised tensor (channel 0)."""
    s = t.shape[-1] // 2
    return int(round((float(t[0, 0, s, s]) * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255))


def _frame(i: int) -> np.ndarray:
    """Constant frame whose value encodes its index, so a template crop tells which frame it came from."""
    return np.full((120, 160, 3), 20 + 10 * i, dtype=np.uint8)


def _frame_of(t: torch.Tensor) -> int:
    return (_denormalised_centre(t) - 20) // 10


# A box that keeps its size: normalised width 1/search_factor of the search crop (factor 4).
STABLE_BOX = (0.375, 0.375, 0.625, 0.625)
INIT = [70.0, 50.0, 20.0, 20.0]


def _run(scores, cached=True, **cfg):
    model = ScriptedModel(STABLE_BOX, scores)
    tracker = MixFormerV2Tracker(model, _test_cfg(search_factor=4.0, **cfg), 32, 64, "cpu", cached=cached)
    tracker.initialize(_frame(0), INIT)
    outs = [tracker.track(_frame(i)) for i in range(1, len(scores) + 1)]
    used = [[_frame_of(t) for t in online] for online in model.online_seen]  # per frame 1..n
    return model, tracker, outs, used


# ---------------------------------------------------------------------------------------------- golden crops
def test_golden_crops_through_tracker():
    golden = torch.load(GOLDEN, weights_only=False)
    image = golden["image_rgb"]
    image = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    out_box = (0.25, 0.3, 0.6, 0.7)
    for case in golden["crop_cases"]:
        size, factor = int(case["output_size"]), float(case["factor"])
        expected = normalize_image(np.asarray(case["crop"]), IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)
        model = ScriptedModel(out_box, scores=[0.1])
        cfg = _test_cfg(template_factor=factor, search_factor=factor, clip_margin=0)
        tracker = MixFormerV2Tracker(model, cfg, size, size, "cpu")
        tracker.initialize(image, case["box_xywh"])
        torch.testing.assert_close(model.encoded[0][0], expected, atol=1e-5, rtol=0)  # template crop
        result = tracker.track(image)
        torch.testing.assert_close(model.searches[0], expected, atol=1e-5, rtol=0)  # search crop
        # the golden resize factor drives the map-back
        cxcywh = [0.425, 0.5, 0.35, 0.4]
        want = box_from_crop(cxcywh, case["box_xywh"], float(case["resize_factor"]), size)
        want = clip_box_xywh(want, image.shape[0], image.shape[1], margin=0)
        np.testing.assert_allclose(result.box_xywh, want, atol=1e-3)


def _inverse_map(box_xywh, prev_xywh, factor, size):
    """The normalised xyxy the network must output for the tracker to map back to ``box_xywh`` (unclipped)."""
    side = crop_side(prev_xywh, factor)
    rf = size / side
    x, y, w, h = box_xywh
    px, py, pw, ph = prev_xywh
    half = 0.5 * side
    cx = x + 0.5 * w - (px + 0.5 * pw) + half
    cy = y + 0.5 * h - (py + 0.5 * ph) + half
    cxcywh = np.array([cx, cy, w, h]) * rf / size
    return (cxcywh[0] - cxcywh[2] / 2, cxcywh[1] - cxcywh[3] / 2, cxcywh[0] + cxcywh[2] / 2,
            cxcywh[1] + cxcywh[3] / 2)


def test_golden_clipping_through_tracker():
    golden = torch.load(GOLDEN, weights_only=False)
    prev = [60.0, 40.0, 30.0, 30.0]
    for case in golden["clip_cases"]:
        image = np.zeros((int(case["H"]), int(case["W"]), 3), dtype=np.uint8)
        model = ScriptedModel(_inverse_map(case["box_xywh"], prev, 4.0, 64), scores=[0.1])
        tracker = MixFormerV2Tracker(model, _test_cfg(search_factor=4.0, clip_margin=int(case["margin"])),
                                     32, 64, "cpu")
        tracker.initialize(image, prev)
        out = tracker.track(image)
        np.testing.assert_allclose(out.box_xywh, case["clipped"], atol=1e-3)


def test_each_crop_uses_its_own_factor_and_size_and_the_candidate_follows_the_new_box():
    image = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    model = ScriptedModel((0.45, 0.40, 0.70, 0.65), scores=[0.9, 0.2])
    cfg = _test_cfg(template_factor=2.0, search_factor=4.0, update_interval=1)
    tracker = MixFormerV2Tracker(model, cfg, 32, 64, "cpu")
    tracker.initialize(image, INIT)
    state = tracker.track(image).box_xywh
    tracker.track(image)

    def crop(box, factor, size):
        pixels = crop_square_xywh(image, box, factor, size).image
        return normalize_image(pixels, IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)

    torch.testing.assert_close(model.encoded[0][0], crop(INIT, 2.0, 32))
    torch.testing.assert_close(model.searches[0], crop(INIT, 4.0, 64))
    torch.testing.assert_close(model.searches[1], crop(state, 4.0, 64))  # around the previous (clipped) box
    torch.testing.assert_close(model.online_seen[1][0], crop(state, 2.0, 32))  # candidate from the new box
    assert state != INIT


# ------------------------------------------------------------------------------------------------ update rule
def test_online_update_best_candidate_then_revert_to_initial():
    scores = [0.6, 0.9, 0.7, 0.3, 0.2] + [0.4] * 5 + [0.45] * 5
    model, tracker, outs, used = _run(scores, update_interval=5)
    assert [u[0] for u in used] == [0] * 5 + [2] * 5 + [0] * 5
    np.testing.assert_allclose([o.score for o in outs], scores, atol=1e-6)
    # cached path: encoded at init, at the swap (frame 5) and at the revert (frame 10); not at frame 15
    assert len(model.encoded) == 3 and model.full_calls == 0
    assert [_frame_of(online[0]) for _, online in model.encoded] == [0, 2, 0]
    assert all(_frame_of(t) == 0 for t, _ in model.encoded)  # the initial template never changes
    np.testing.assert_allclose(outs[-1].box_xywh, INIT, atol=1e-3)


def test_threshold_is_strict_and_candidate_taken_from_current_frame():
    _, _, _, used = _run([0.5, 0.3, 0.5, 0.2, 0.1], update_interval=4)
    assert used[4] == [0]  # exactly 0.5 never beats the threshold: back to the initial template
    _, _, _, used = _run([0.5, 0.3, 0.55, 0.5, 0.1], update_interval=4)
    assert used[4] == [3]  # frame 3 (0.55) did


def test_max_score_decay():
    scores = [0.9, 0.6, 0.1]
    _, _, _, used = _run(scores + [0.1], update_interval=3, max_score_decay=1.0)
    assert used[3] == [1]
    _, _, _, used = _run(scores + [0.1], update_interval=3, max_score_decay=0.5)
    assert used[3] == [2]  # 0.9 decayed to 0.45 < 0.6


def test_online_size_three_round_robin():
    scores = [0.9, 0.6] * 6 + [0.1]
    model, _, _, used = _run(scores, update_interval=2, online_size=3)
    # updates at frames 2, 4, 6, ...; the candidate of each interval is its first (0.9) frame
    assert used[2] == [0, 1]  # frame 3 sees the appended set
    assert used[4] == [0, 1, 3]
    assert used[6] == [5, 1, 3]  # slot 0 overwritten first
    assert used[8] == [5, 7, 3]
    assert used[10] == [5, 7, 9]
    assert used[12] == [11, 7, 9]


def test_no_score_head_keeps_initial_template():
    model = ScriptedModel(STABLE_BOX, scores=None)
    tracker = MixFormerV2Tracker(model, _test_cfg(search_factor=4.0, update_interval=1), 32, 64, "cpu")
    tracker.initialize(_frame(0), INIT)
    outs = [tracker.track(_frame(i)) for i in range(1, 4)]
    assert all(o.score is None for o in outs)
    assert len(model.encoded) == 1


def test_uncached_uses_full_forward_with_same_templates():
    scores = [0.6, 0.9, 0.7, 0.3, 0.2] + [0.4] * 5
    cached = _run(scores, cached=True, update_interval=5)
    full = _run(scores, cached=False, update_interval=5)
    assert full[0].full_calls == len(scores) and cached[0].full_calls == 0
    assert cached[3] == full[3]


def test_track_before_initialize_raises():
    tracker = MixFormerV2Tracker(ScriptedModel(), TrackerSettings(), 32, 64, "cpu")
    with pytest.raises(RuntimeError, match="initialize"):
        tracker.track(_frame(0))


# -------------------------------------------------------------------------------------- real tiny network
TINY = ModelConfig(embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, template_size=32, search_size=64,
                   num_bins=16, score_head=True, drop_path_rate=0.0)


def synthetic_video(n=12, height=96, width=128, seed=0):
    """A textured background with a bright square moving diagonally; returns frames and the initial box."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        x, y = 30 + 2 * i, 25 + i
        frame[y:y + 20, x:x + 16] = (230, 200, 40)
        frames.append(frame)
    return frames, [30.0, 25.0, 16.0, 20.0]


@pytest.mark.parametrize("online_size", [1, 2])
def test_cached_and_full_forward_give_the_same_trajectory(online_size):
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    frames, init = synthetic_video()
    cfg = _test_cfg(search_factor=4.0, update_interval=2, online_size=online_size, score_threshold=0.0)
    trajectories = []
    for cached in (True, False):
        tracker = MixFormerV2Tracker(model, cfg, TINY.template_size, TINY.search_size, "cpu", cached=cached)
        tracker.initialize(frames[0], init)
        trajectories.append(np.array([tracker.track(f).box_xywh for f in frames[1:]]))
    assert tracker.num_template_sets > 1  # the online templates did change along the way
    np.testing.assert_allclose(trajectories[0], trajectories[1], atol=1e-4, rtol=0)
