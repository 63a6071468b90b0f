"""Synthetic tracking videos written in the LaSOT and GOT-10k on-disk formats.

Real benchmarks cannot be downloaded everywhere, so the quickstart, the tests and users' smoke tests run on videos
generated here and read back by the ordinary readers in ``mixformerv2.data.datasets``.

A video is a textured target (ellipse, polygon, blob, star or ring; noise, stripe or checker texture) moving
smoothly, with acceleration, scale and aspect changes, over a cluttered textured background seen by a panning and
shaking camera. Look-alike distractors pass under it; floating shapes and full-height pillars pass over it (partial
and full occlusion); its path can leave the frame (out of view). Illumination drifts, fast motion blurs, and a
little sensor noise is added before JPEG encoding.

Every annotation comes from what was drawn: the target is rasterised as a binary mask, the ground-truth box is the
bounding box of the whole mask inside the frame (occluded parts included), and the visible fraction is
``unoccluded in-frame target pixels / full target area``. From the per-frame truth:

* LaSOT (``<root>/<class>/<class>-<k>/``): ``img/%08d.jpg``; ``groundtruth.txt`` integer ``x,y,w,h`` rows,
  **1-based**, ``0,0,0,0`` while the target is out of view (a fully occluded target keeps its box);
  ``full_occlusion.txt`` / ``out_of_view.txt`` one line of comma-separated 0/1 flags (full occlusion = in frame but
  no pixel visible; out of view = no pixel in frame); ``nlp.txt`` one sentence. ``<root>/training_set.txt`` and
  ``<root>/testing_set.txt`` list the sequences.
* GOT-10k (``<root>/{train,val,test}/``): ``list.txt``; ``GOT-10k_<Split>_%06d/%08d.jpg``; ``groundtruth.txt``
  ``x,y,w,h`` with four decimals, **0-based**, ``0,0,0,0`` while out of view (test: the first row only);
  ``absence.label`` (1 = no pixel visible), ``cover.label`` (visible fraction in the nine GOT-10k levels, see
  :func:`cover_level`), ``cut_by_image.label`` (1 = part of the target lies outside the frame) and
  ``meta_info.ini`` (train and val only, as in the real test set).

Each format root also gets ``synthetic_truth.json`` (0-based boxes and fractions per frame) for tests.
Generation is deterministic: every sequence draws from its own ``np.random.Generator`` seeded from
``(seed, dataset, split, index)``, so the same seed gives byte-identical files whatever the number of workers.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SHAPE_KINDS = ("ellipse", "polygon", "blob", "star", "ring")
TEXTURE_KINDS = ("noise", "stripes", "checker")
COVER_EDGES = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
GOT10K_SPLIT_PREFIX = {"train": "GOT-10k_Train", "val": "GOT-10k_Val", "test": "GOT-10k_Test"}
TRUTH_FILE = "synthetic_truth.json"
_TEXTURE_WORDS = {"noise": "mottled", "stripes": "striped", "checker": "checkered"}


# ----------------------------------------------------------------------------------------------------------------
# Configuration and truth
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SceneConfig:
    """How one synthetic video looks. Pixels unless the name says otherwise.

    target_size_frac: range of the target's initial size (geometric mean of w and h) as a fraction of the frame's
    smaller side. scale_range: multiplicative size change relative to frame 0. aspect_jitter: max |log| change of
    the aspect ratio. motion_gap: frames between key points of the target path (smaller is faster).
    camera_pan_frac: how far the camera pans, as a fraction of the frame size. shake_px: camera-shake amplitude.
    The ``*_prob`` fields are per-sequence probabilities of an event.
    """

    width: int = 320
    height: int = 240
    frames: int = 120
    target_size_frac: tuple[float, float] = (0.14, 0.25)
    scale_range: tuple[float, float] = (0.7, 1.45)
    aspect_jitter: float = 0.25
    motion_gap: tuple[int, int] = (8, 22)
    camera_pan_frac: float = 0.3
    shake_prob: float = 0.5
    shake_px: float = 3.0
    max_distractors: int = 2
    max_floaters: int = 2
    full_occlusion_prob: float = 0.4
    out_of_view_prob: float = 0.35
    illumination: float = 0.3
    motion_blur: bool = True
    noise_sigma: float = 3.0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"SceneConfig: frame size {self.width}x{self.height} is below 16x16")
        if self.frames < 2:
            raise ValueError(f"SceneConfig: frames={self.frames}; a video needs at least 2 frames")
        if not 0 < self.target_size_frac[0] <= self.target_size_frac[1] < 0.6:
            raise ValueError(f"SceneConfig: target_size_frac={self.target_size_frac} must satisfy 0 < lo <= hi < 0.6")
        if not 1 <= self.motion_gap[0] <= self.motion_gap[1]:
            raise ValueError(f"SceneConfig: motion_gap={self.motion_gap} must satisfy 1 <= lo <= hi")


@dataclass(frozen=True)
class Preset:
    """How many sequences of which length each format gets, and the scene they share."""

    scene: SceneConfig
    lasot_classes: int
    lasot_train_per_class: int
    lasot_test_per_class: int
    lasot_frames: int
    got10k_counts: dict[str, int]
    got10k_frames: int


PRESETS: dict[str, Preset] = {
    "quickstart": Preset(scene=SceneConfig(), lasot_classes=5, lasot_train_per_class=4, lasot_test_per_class=1,
                         lasot_frames=120, got10k_counts={"train": 16, "val": 3, "test": 3}, got10k_frames=100),
    "tiny": Preset(scene=SceneConfig(width=64, height=48, motion_gap=(3, 6), shake_px=1.0, noise_sigma=2.0),
                   lasot_classes=3, lasot_train_per_class=1, lasot_test_per_class=1, lasot_frames=16,
                   got10k_counts={"train": 2, "val": 2, "test": 2}, got10k_frames=16),
}


@dataclass
class SequenceTruth:
    """Per-frame truth of one generated sequence (N frames).

    box_xywh: (N, 4) int64, 0-based pixels: bounding box of the whole target mask inside the frame, occluded parts
    included; all zeros while out of view. visible_fraction: (N,) float64, unoccluded in-frame target pixels / full
    target area. in_frame_fraction: (N,) float64, in-frame target pixels / full target area. index and shape_kind
    replay the sequence: ``make_video(config, seed, dataset, split, index, shape_kind)``.
    """

    name: str
    split: str
    object_class: str
    index: int
    shape_kind: str
    box_xywh: np.ndarray
    visible_fraction: np.ndarray
    in_frame_fraction: np.ndarray

    @property
    def out_of_view(self) -> np.ndarray:
        """(N,) bool: no target pixel lies inside the frame."""
        return self.in_frame_fraction == 0

    @property
    def full_occlusion(self) -> np.ndarray:
        """(N,) bool: the target is (partly) inside the frame but every in-frame pixel is covered."""
        return (self.in_frame_fraction > 0) & (self.visible_fraction == 0)

    @property
    def cover(self) -> np.ndarray:
        """(N,) int64 GOT-10k cover level 0..8 of the visible fraction."""
        return np.array([cover_level(f) for f in self.visible_fraction], dtype=np.int64)

    @property
    def cut_by_image(self) -> np.ndarray:
        """(N,) bool: the target is partly, not wholly, outside the frame."""
        return (self.in_frame_fraction > 0) & (self.in_frame_fraction < 1)

    def to_json(self) -> dict:
        return {"name": self.name, "split": self.split, "object_class": self.object_class, "index": self.index,
                "shape_kind": self.shape_kind, "box_xywh": self.box_xywh.tolist(),
                "visible_fraction": [round(float(v), 6) for v in self.visible_fraction],
                "in_frame_fraction": [round(float(v), 6) for v in self.in_frame_fraction]}

    @classmethod
    def from_json(cls, item: dict) -> "SequenceTruth":
        return cls(name=item["name"], split=item["split"], object_class=item["object_class"],
                   index=int(item["index"]), shape_kind=item["shape_kind"],
                   box_xywh=np.asarray(item["box_xywh"], dtype=np.int64).reshape(-1, 4),
                   visible_fraction=np.asarray(item["visible_fraction"], dtype=np.float64),
                   in_frame_fraction=np.asarray(item["in_frame_fraction"], dtype=np.float64))


def cover_level(visible_fraction: float) -> int:
    """GOT-10k cover level: 0 for 0 %, 1..6 for (0, 15], (15, 30], ..., (75, 90] %, 7 for (90, 100) %, 8 for 100 %."""
    if visible_fraction <= 0:
        return 0
    if visible_fraction >= 1:
        return 8
    return 1 + int(np.searchsorted(COVER_EDGES, visible_fraction, side="left"))


def load_truth(root: str | Path) -> dict[str, SequenceTruth]:
    """Read ``<root>/synthetic_truth.json`` written by a generator: sequence name -> truth."""
    data = json.loads((Path(root) / TRUTH_FILE).read_text())
    return {item["name"]: SequenceTruth.from_json(item) for item in data["sequences"]}


def sequence_rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    """The generator of one sequence, a pure function of (seed, dataset, split, index)."""
    key = zlib.crc32(f"{dataset}/{split}".encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


# ----------------------------------------------------------------------------------------------------------------
# Smooth random tracks
# ----------------------------------------------------------------------------------------------------------------

def _key_times(rng: np.random.Generator, n: int, gap: tuple[int, int]) -> np.ndarray:
    """Integer key-frame times 0 = t_0 < t_1 < ... with t_last >= n - 1, gaps drawn from [gap[0], gap[1]]."""
    times = [0]
    while times[-1] < n - 1:
        times.append(times[-1] + int(rng.integers(gap[0], gap[1] + 1)))
    return np.asarray(times, dtype=np.float64)


def _hermite(times: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """C1 cubic through keys (Catmull-Rom tangents). times: (K,) increasing; values: (K, D) -> (n, D) at 0..n-1."""
    k = len(times)
    tangents = np.zeros_like(values)
    if k > 2:
        tangents[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2])[:, None]
    t = np.arange(n, dtype=np.float64)
    seg = np.clip(np.searchsorted(times, t, side="right") - 1, 0, k - 2)
    t0, t1 = times[seg], times[seg + 1]
    dt = (t1 - t0)[:, None]
    u = ((t - t0) / (t1 - t0))[:, None]
    h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
    h01, h11 = -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2
    return h00 * values[seg] + h10 * dt * tangents[seg] + h01 * values[seg + 1] + h11 * dt * tangents[seg + 1]


def _smooth_track(rng: np.random.Generator, n: int, gap: tuple[int, int], low, high, start=None) -> np.ndarray:
    """(n, D) smooth random track with keys uniform in [low, high] (D = len(low)); key 0 is ``start`` if given."""
    low, high = np.atleast_1d(np.asarray(low, float)), np.atleast_1d(np.asarray(high, float))
    times = _key_times(rng, n, gap)
    values = rng.uniform(low, high, size=(len(times), len(low)))
    if start is not None:
        values[0] = start
    return _hermite(times, values, n)


# ----------------------------------------------------------------------------------------------------------------
# Appearance: colours, textures, shapes, background
# ----------------------------------------------------------------------------------------------------------------

def _hsv_to_bgr(hue: float, sat: float, val: float) -> np.ndarray:
    """One colour, OpenCV HSV (hue 0..179) -> (3,) float32 BGR."""
    pixel = np.array([[[int(hue) % 180, int(sat), int(val)]]], dtype=np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _make_texture(rng: np.random.Generator, kind: str, hue: float, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 BGR two-colour texture of the given kind around ``hue`` (OpenCV units)."""
    c1 = _hsv_to_bgr(hue, rng.integers(150, 256), rng.integers(150, 256))
    c2 = _hsv_to_bgr(hue + rng.integers(45, 135), rng.integers(90, 256), rng.integers(50, 200))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, math.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    if kind == "noise":
        field_ = cv2.resize(rng.random((5, 5)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        alpha = np.clip((field_ - 0.5) * 4 + 0.5, 0, 1)
    elif kind == "stripes":
        period = rng.uniform(0.15, 0.4)
        alpha = np.clip(np.sin(2 * math.pi * u / period) * 1.5 + 0.5, 0, 1)
    elif kind == "checker":
        cells = rng.uniform(2.5, 5.0)
        alpha = ((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(np.float32)
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    texture = alpha[..., None] * c1 + (1 - alpha[..., None]) * c2 + rng.normal(0, 6, (size, size, 3))
    return np.clip(texture, 0, 255).astype(np.uint8)


def _normalise(points: np.ndarray) -> np.ndarray:
    """(V, 2) points -> scaled and shifted so that their bounding box is exactly [0, 1] x [0, 1]."""
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.maximum(high - low, 1e-6)


def _make_shape(rng: np.random.Generator, kind: str) -> list[tuple[np.ndarray, int]]:
    """A shape as (polygon (V, 2) in the unit box, fill value) pairs, drawn in order (0 cuts a hole)."""
    if kind == "polygon":
        k = int(rng.integers(5, 9))
        angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * 2 * math.pi / k
        radii = rng.uniform(0.75, 1.0, k)
    elif kind == "star":
        k = int(rng.integers(5, 8))
        angles = np.arange(2 * k) * math.pi / k
        radii = np.where(np.arange(2 * k) % 2 == 0, 1.0, rng.uniform(0.45, 0.65))
    else:
        angles = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        radii = np.ones_like(angles)
        if kind == "blob":
            for j in (2, 3, 4):
                radii = radii + rng.uniform(0.0, 0.15) * np.sin(j * angles + rng.uniform(0, 2 * math.pi))
        elif kind not in ("ellipse", "ring"):
            raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")
    outer = _normalise(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))
    polygons = [(outer, 1)]
    if kind == "ring":
        polygons.append((0.5 + (outer - 0.5) * rng.uniform(0.4, 0.6), 0))
    return polygons


def _rasterise(polygons: list[tuple[np.ndarray, int]], width: int, height: int) -> np.ndarray:
    """Binary (height, width) bool mask of a unit-box shape stretched over a width x height sprite."""
    mask = np.zeros((height, width), dtype=np.uint8)
    scale = np.array([width - 1, height - 1], dtype=np.float64) * 16
    for points, value in polygons:
        cv2.fillPoly(mask, [np.round(points * scale).astype(np.int32)], int(value), lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 cluttered background: smooth colour field, mid-frequency noise, random shapes."""
    coarse = rng.uniform(30, 220, (int(rng.integers(3, 7)), int(rng.integers(4, 9)), 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    mid = rng.normal(0, 22, (max(2, height // 8), max(2, width // 8), 3)).astype(np.float32)
    image += cv2.resize(mid, (width, height), interpolation=cv2.INTER_LINEAR)
    image = np.clip(image, 0, 255).astype(np.uint8)
    side = min(height, width)
    for _ in range(int(height * width / 2500) + 4):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(2, max(3, side // 10)))
        kind = rng.integers(0, 4)
        if kind == 0:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r), color, -1)
        elif kind == 1:
            cv2.circle(image, (x, y), r, color, -1)
        elif kind == 2:
            end = (x + int(rng.integers(-3 * r, 3 * r + 1)), y + int(rng.integers(-3 * r, 3 * r + 1)))
            cv2.line(image, (x, y), end, color, int(rng.integers(1, 4)))
        else:
            points = np.array([x, y]) + rng.integers(-r, r + 1, (int(rng.integers(3, 6)), 2))
            cv2.fillPoly(image, [points.astype(np.int32)], color)
    return image


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """(k, k) float32 linear motion-blur kernel of ``length`` pixels along ``angle`` radians, summing to 1."""
    k = length | 1
    kernel = np.zeros((k, k), dtype=np.float32)
    c, d = k // 2, (length - 1) / 2
    dx, dy = d * math.cos(angle), d * math.sin(angle)
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return kernel / kernel.sum()


def _colour_name(hue: float) -> str:
    """Rough English name of an OpenCV hue (0..179)."""
    for limit, name in ((8, "red"), (20, "orange"), (33, "yellow"), (78, "green"), (100, "cyan"), (130, "blue"),
                        (150, "purple"), (170, "pink")):
        if hue % 180 < limit:
            return name
    return "red"


# ----------------------------------------------------------------------------------------------------------------
# Scene planning
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class _Sprite:
    """A textured shape: polygons in the unit box, (S, S, 3) texture, per-frame screen centre and size (n, 2)."""

    polygons: list
    texture: np.ndarray
    center: np.ndarray
    size: np.ndarray

    def pixels(self, t: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Texture (h, w, 3) uint8, mask (h, w) bool and top-left corner (x0, y0) in frame pixels at frame t."""
        w, h = (int(v) for v in np.maximum(2, np.round(self.size[t])))
        x0 = int(round(self.center[t, 0] - w / 2))
        y0 = int(round(self.center[t, 1] - h / 2))
        texture = cv2.resize(self.texture, (w, h), interpolation=cv2.INTER_LINEAR)
        return texture, _rasterise(self.polygons, w, h), x0, y0


@dataclass
class _Pillar:
    """A full-height occluder sliding through the world: centre x (world pixels) at frame t_mid, velocity
    (world pixels per frame), (H, w, 3) texture."""

    world_x: float
    t_mid: int
    velocity: float
    texture: np.ndarray

    def left(self, t: int, view_x: float) -> int:
        """Screen x of the pillar's left edge at frame t for a camera at world x ``view_x``."""
        return int(round(self.world_x + self.velocity * (t - self.t_mid) - view_x - self.texture.shape[1] / 2))


@dataclass
class RenderedFrame:
    """One rendered frame. image: (H, W, 3) uint8 BGR (None when not painted); target_mask: (H, W) bool, the whole
    target inside the frame (occluded parts included); visible_mask: (H, W) bool, its unoccluded pixels;
    target_area: pixels of the full target mask, inside the frame or not."""

    image: np.ndarray | None
    target_mask: np.ndarray
    visible_mask: np.ndarray
    target_area: int


def frame_truth(rendered: RenderedFrame) -> tuple[np.ndarray, float, float]:
    """Ground truth from the masks: (box_xywh (4,) int64 0-based, zeros if out of view; visible fraction;
    in-frame fraction)."""
    mask = rendered.target_mask
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros(4, dtype=np.int64), 0.0, 0.0
    box = np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], dtype=np.int64)
    area = float(rendered.target_area)
    return box, float(rendered.visible_mask.sum()) / area, float(mask.sum()) / area


class SyntheticVideo:
    """One planned video. Planning draws every random choice up front from ``rng``, so ``render(t)`` is a pure
    function of t and frames can be rendered in any order.

    Args:
        config: the scene.
        rng: the sequence's generator (see :func:`sequence_rng`).
        shape_kind: the target's shape (one of ``SHAPE_KINDS``); drawn from ``rng`` when None.
    """

    def __init__(self, config: SceneConfig, rng: np.random.Generator, shape_kind: str | None = None):
        self.config = config
        n, width, height = config.frames, config.width, config.height
        drawn_kind = str(rng.choice(SHAPE_KINDS))  # drawn either way, so the stream does not depend on shape_kind
        self.shape_kind = shape_kind or drawn_kind
        self.texture_kind = str(rng.choice(TEXTURE_KINDS))
        self.hue = float(rng.uniform(0, 180))
        self._plan_camera(rng)
        self.target = self._plan_target(rng)
        self.distractors = [self._plan_distractor(rng) for _ in range(int(rng.integers(0, config.max_distractors + 1)))]
        self.floaters = [self._plan_floater(rng) for _ in range(int(rng.integers(0, config.max_floaters + 1)))]
        self.pillars = self._plan_pillars(rng)
        log_gain = _smooth_track(rng, n, (20, 60), math.log(1 - config.illumination * 0.8),
                                 math.log(1 + config.illumination))
        tint = _smooth_track(rng, n, (20, 60), [-0.2 * config.illumination] * 3, [0.2 * config.illumination] * 3)
        self._gain = (np.exp(log_gain) * (1 + tint)).astype(np.float32)
        noise = np.round(rng.normal(0, config.noise_sigma, (3, height, width, 3)))
        self._noise = [(np.clip(v, 0, 255).astype(np.uint8), np.clip(-v, 0, 255).astype(np.uint8)) for v in noise]

    def __len__(self) -> int:
        return self.config.frames

    @property
    def description(self) -> str:
        """One English sentence naming the target, for LaSOT's nlp.txt."""
        return (f"the {_colour_name(self.hue)} {_TEXTURE_WORDS[self.texture_kind]} {self.shape_kind} "
                f"moving through a cluttered scene")

    @property
    def mean_speed(self) -> float:
        """Mean target displacement per frame, in pixels."""
        return float(np.linalg.norm(np.diff(self.target.center, axis=0), axis=1).mean())

    # -- planning ----------------------------------------------------------------------------------------------
    def _plan_camera(self, rng: np.random.Generator) -> None:
        """Camera origin in world pixels: pan track plus shake spells. Sets _view (n, 2) and the world image."""
        cfg, n = self.config, self.config.frames
        pan = np.array([cfg.width, cfg.height]) * cfg.camera_pan_frac
        shake = np.zeros((n, 2))
        if cfg.shake_px > 0 and rng.random() < cfg.shake_prob and n > 4:
            start = int(rng.integers(1, n - 1))
            stop = min(n, start + int(rng.integers(5, 16)))
            shake[start:stop] = np.clip(rng.normal(0, cfg.shake_px, (stop - start, 2)), -2 * cfg.shake_px,
                                        2 * cfg.shake_px)
        self._shake = shake
        margin = int(math.ceil(2 * cfg.shake_px)) + 1
        self._view = np.clip(_smooth_track(rng, n, (20, 50), [0, 0], pan), 0, pan) + shake + margin
        world_w, world_h = int(cfg.width + pan[0]) + 2 * margin + 1, int(cfg.height + pan[1]) + 2 * margin + 1
        self._world = _make_background(rng, world_h, world_w)

    def _size_track(self, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
        """(n, 2) w, h of a sprite with initial size ``base`` (2,), smooth scale and aspect changes."""
        cfg, n = self.config, self.config.frames
        log_scale = _smooth_track(rng, n, (15, 40), math.log(cfg.scale_range[0]), math.log(cfg.scale_range[1]), 0)
        log_aspect = _smooth_track(rng, n, (15, 40), -cfg.aspect_jitter, cfg.aspect_jitter, 0)
        size = base * np.exp(log_scale) * np.exp(log_aspect * np.array([0.5, -0.5]))
        return np.clip(size, 3, np.array([cfg.width, cfg.height]) * 0.6)

    def _base_size(self, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """(2,) initial w, h drawn from target_size_frac and an aspect ratio in [0.67, 1.5]."""
        cfg = self.config
        side = rng.uniform(*cfg.target_size_frac) * min(cfg.width, cfg.height) * scale
        aspect = math.exp(rng.uniform(-0.4, 0.4))
        return np.array([side * math.sqrt(aspect), side / math.sqrt(aspect)])

    def _random_keys(self, rng: np.random.Generator, times: np.ndarray, half: np.ndarray) -> np.ndarray:
        """(K, 2) key centres uniform over the frame, keeping a sprite of half-size ``half`` inside if possible."""
        frame = np.array([self.config.width, self.config.height], dtype=np.float64)
        low = np.minimum(half, frame / 2)
        high = np.maximum(frame - half, frame / 2)
        return rng.uniform(low, high, size=(len(times), 2))

    def _outside_key(self, rng: np.random.Generator, size: np.ndarray, key: np.ndarray,
                     axis: int | None = None, side: int | None = None) -> tuple[np.ndarray, int, int]:
        """Move a key centre (2,) beyond a frame edge (random unless ``axis``/``side`` are given) so that a sprite
        of ``size`` (2,) is wholly outside, camera shake included. Returns (key, axis, side)."""
        cfg = self.config
        axis = int(rng.integers(0, 2)) if axis is None else axis
        side = int(rng.integers(0, 2)) if side is None else side
        out = key.copy()
        margin = size[axis] * 0.6 + 2 * cfg.shake_px + 3
        out[axis] = -margin if side == 0 else (cfg.width, cfg.height)[axis] + margin
        return out, axis, side

    def _plan_target(self, rng: np.random.Generator) -> _Sprite:
        cfg, n = self.config, self.config.frames
        size = self._size_track(rng, self._base_size(rng))
        times = _key_times(rng, n, cfg.motion_gap)
        keys = self._random_keys(rng, times, size[0] * 0.55)
        candidates = [k for k in range(1, len(times)) if 0.2 * n <= times[k] <= n - 1]
        if candidates and rng.random() < cfg.out_of_view_prob:
            k = int(rng.choice(candidates))
            keys[k], axis, side = self._outside_key(rng, size[int(times[k])], keys[k])
            if k + 1 < len(times) and rng.random() < 0.5:
                keys[k + 1], _, _ = self._outside_key(rng, size[min(int(times[k + 1]), n - 1)], keys[k + 1], axis, side)
        center = _hermite(times, keys, n) - self._shake
        texture = _make_texture(rng, self.texture_kind, self.hue)
        return _Sprite(_make_shape(rng, self.shape_kind), texture, center, size)

    def _plan_distractor(self, rng: np.random.Generator) -> _Sprite:
        """A look-alike: same shape kind and texture kind, hue shifted by 20..50 degrees, similar size."""
        n = self.config.frames
        size = self._size_track(rng, self.target.size[0] * rng.uniform(0.8, 1.2))
        times = _key_times(rng, n, self.config.motion_gap)
        center = _hermite(times, self._random_keys(rng, times, size[0] * 0.5), n) - self._shake
        hue = self.hue + rng.choice([-1, 1]) * rng.uniform(10, 25)
        return _Sprite(_make_shape(rng, self.shape_kind), _make_texture(rng, self.texture_kind, hue), center, size)

    def _plan_floater(self, rng: np.random.Generator) -> _Sprite:
        """A partial occluder drifting over the target; it starts outside the frame so frame 0 is unoccluded."""
        n = self.config.frames
        size = np.tile(self._base_size(rng, scale=rng.uniform(0.5, 0.9)), (n, 1))
        times = _key_times(rng, n, (self.config.motion_gap[0] * 2, self.config.motion_gap[1] * 2))
        keys = self._random_keys(rng, times, size[0] * 0.5)
        keys[0], _, _ = self._outside_key(rng, size[0], keys[0])
        center = _hermite(times, keys, n) - self._shake
        kind = str(rng.choice(SHAPE_KINDS))
        texture = _make_texture(rng, str(rng.choice(TEXTURE_KINDS)), rng.uniform(0, 180))
        return _Sprite(_make_shape(rng, kind), texture, center, size)

    def _plan_pillars(self, rng: np.random.Generator) -> list[_Pillar]:
        """At most one full-height pillar, placed so that it hides the whole target at some frame t_mid
        (and not at frame 0)."""
        cfg, n = self.config, self.config.frames
        if rng.random() >= cfg.full_occlusion_prob:
            return []
        center, size = self.target.center, self.target.size
        frame = np.array([cfg.width, cfg.height])
        first, last = int(0.25 * n), int(0.9 * n)
        for t_mid in rng.permutation(np.arange(first, max(first, last) + 1)):
            t_mid = int(min(t_mid, n - 1))
            if np.any(center[t_mid] - size[t_mid] / 2 < 1) or np.any(center[t_mid] + size[t_mid] / 2 > frame - 1):
                continue
            width = int(math.ceil(size[t_mid, 0] * 1.25 + 4))
            world_x = center[t_mid, 0] + self._view[t_mid, 0]
            velocity = rng.choice([-1.0, 1.0]) * rng.uniform(0.005, 0.02) * cfg.width
            pillar = _Pillar(world_x, t_mid, velocity, self._pillar_texture(rng, width))
            if abs(pillar.left(0, self._view[0, 0]) + width / 2 - center[0, 0]) <= (size[0, 0] + width) / 2 + 2:
                continue
            return [pillar]
        return []

    def _pillar_texture(self, rng: np.random.Generator, width: int) -> np.ndarray:
        """(H, width, 3) uint8 dull banded texture."""
        bands = rng.uniform(40, 180, (int(rng.integers(4, 12)), 1, 3)).astype(np.float32)
        texture = cv2.resize(bands, (width, self.config.height), interpolation=cv2.INTER_NEAREST)
        shade = np.linspace(0.7, 1.1, width, dtype=np.float32)[None, :, None]
        return np.clip(texture * shade + rng.normal(0, 5, texture.shape), 0, 255).astype(np.uint8)

    # -- rendering ---------------------------------------------------------------------------------------------
    def render(self, t: int, paint: bool = True) -> RenderedFrame:
        """Frame t (0-based). With ``paint=False`` only the masks are computed (image is None)."""
        cfg = self.config
        height, width = cfg.height, cfg.width
        image = self._background(t) if paint else None
        if paint:
            for sprite in self.distractors:
                _paste(image, *sprite.pixels(t))
        texture, mask, x0, y0 = self.target.pixels(t)
        target_mask = np.zeros((height, width), dtype=bool)
        placed = _clip_region(mask.shape, x0, y0, height, width)
        if placed is not None:
            (fy, fx), (sy, sx) = placed
            target_mask[fy, fx] = mask[sy, sx]
            if paint:
                _paste(image, self._blur_target(texture, t), mask, x0, y0)
        occluded = np.zeros((height, width), dtype=bool)
        for sprite in self.floaters:
            sprite_texture, sprite_mask, sx0, sy0 = sprite.pixels(t)
            _paste(image, sprite_texture, sprite_mask, sx0, sy0, occluded)
        for pillar in self.pillars:
            full = np.ones(pillar.texture.shape[:2], dtype=bool)
            _paste(image, pillar.texture, full, pillar.left(t, self._view[t, 0]), 0, occluded)
        visible = target_mask & ~occluded
        if paint:
            image = self._finish(image, t)
        return RenderedFrame(image, target_mask, visible, int(mask.sum()))

    def _background(self, t: int) -> np.ndarray:
        """(H, W, 3) uint8 crop of the world at the camera position of frame t."""
        x, y = (int(round(v)) for v in self._view[t])
        return self._world[y:y + self.config.height, x:x + self.config.width].copy()

    def _blur_target(self, texture: np.ndarray, t: int) -> np.ndarray:
        """Blur the target texture along its screen velocity when it moves fast (mask unchanged)."""
        if not self.config.motion_blur or t == 0:
            return texture
        velocity = self.target.center[t] - self.target.center[t - 1]
        length = int(min(9, np.linalg.norm(velocity) * 0.5))
        if length < 2:
            return texture
        kernel = _line_kernel(length, math.atan2(velocity[1], velocity[0]))
        return cv2.filter2D(texture, -1, kernel, borderType=cv2.BORDER_REFLECT)

    def _finish(self, image: np.ndarray, t: int) -> np.ndarray:
        """Camera motion blur, illumination gain/tint and sensor noise: (H, W, 3) uint8 -> same."""
        if self.config.motion_blur and t > 0:
            velocity = self._view[t] - self._view[t - 1]
            length = int(min(11, np.linalg.norm(velocity) * 0.8))
            if length >= 2:
                image = cv2.filter2D(image, -1, _line_kernel(length, math.atan2(velocity[1], velocity[0])),
                                     borderType=cv2.BORDER_REFLECT)
        lit = cv2.transform(image, np.diag(self._gain[t]).astype(np.float32))
        positive, negative = self._noise[t % len(self._noise)]
        return cv2.subtract(cv2.add(lit, positive), negative)


def _clip_region(shape: tuple[int, int], x0: int, y0: int, height: int, width: int):
    """Overlap of a (h, w) sprite at (x0, y0) with a height x width frame: ((frame_rows, frame_cols),
    (sprite_rows, sprite_cols)) slices, or None when they do not overlap."""
    h, w = shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return (slice(fy0, fy1), slice(fx0, fx1)), (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))


def _paste(image: np.ndarray | None, texture: np.ndarray, mask: np.ndarray, x0: int, y0: int,
           coverage: np.ndarray | None = None) -> None:
    """Copy the masked sprite into ``image`` (if given) and OR its in-frame mask into ``coverage`` (if given)."""
    frame_shape = (image if image is not None else coverage).shape[:2]
    placed = _clip_region(mask.shape, x0, y0, *frame_shape)
    if placed is None:
        return
    (fy, fx), (sy, sx) = placed
    if image is not None:
        np.copyto(image[fy, fx], texture[sy, sx], where=mask[sy, sx, None])
    if coverage is not None:
        coverage[fy, fx] |= mask[sy, sx]


# ----------------------------------------------------------------------------------------------------------------
# Writing the benchmark formats
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """One sequence to generate and write (picklable, for worker processes)."""

    dataset: str
    seq_dir: str
    name: str
    split: str
    index: int
    seed: int
    config: SceneConfig
    shape_kind: str | None = None


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode a JPEG frame")
    return buffer.tobytes()


def _render_and_write_frames(video: SyntheticVideo, frame_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write ``%08d.jpg`` frames (1-based) into frame_dir, replacing earlier ones; return boxes (N, 4) int64 0-based,
    visible and in-frame fractions (N,)."""
    frame_dir.mkdir(parents=True, exist_ok=True)
    for stale in frame_dir.glob("[0-9]*.jpg"):
        stale.unlink()
    n = len(video)
    boxes, visible, in_frame = np.zeros((n, 4), np.int64), np.zeros(n), np.zeros(n)
    for t in range(n):
        rendered = video.render(t)
        (frame_dir / f"{t + 1:08d}.jpg").write_bytes(_encode_jpeg(rendered.image, video.config.jpeg_quality))
        boxes[t], visible[t], in_frame[t] = frame_truth(rendered)
    return boxes, visible, in_frame


def _flag_line(flags: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in flags) + "\n"


def _write_lasot_annotations(seq_dir: Path, truth: SequenceTruth, description: str) -> None:
    """groundtruth.txt (1-based integer x,y,w,h; 0,0,0,0 out of view), full_occlusion.txt, out_of_view.txt, nlp.txt."""
    rows = [f"{x + 1},{y + 1},{w},{h}" if w > 0 else "0,0,0,0" for x, y, w, h in truth.box_xywh.tolist()]
    (seq_dir / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    (seq_dir / "full_occlusion.txt").write_text(_flag_line(truth.full_occlusion))
    (seq_dir / "out_of_view.txt").write_text(_flag_line(truth.out_of_view))
    (seq_dir / "nlp.txt").write_text(description + "\n")


def _got10k_meta(video: SyntheticVideo, job: _Job) -> str:
    """meta_info.ini text: a [METAINFO] header, then the keys in the order of the real dataset."""
    seconds = len(video) // 10
    adverb = "quickly" if video.mean_speed > 0.03 * min(video.config.width, video.config.height) else "slowly"
    lines = ["[METAINFO]",
             f"url: synthetic://mixformerv2/got10k/{job.split}/{job.index + 1:06d}?seed={job.seed}",
             "begin: 00:00:00",
             f"end: 00:{seconds // 60:02d}:{seconds % 60:02d}",
             "anno_fps: 10Hz",
             f"object_class: {video.shape_kind}",
             "motion_class: moving",
             "major_class: synthetic shape",
             "root_class: object",
             f"motion_adverb: {adverb}",
             f"resolution: ({video.config.width}, {video.config.height})"]
    return "\n".join(lines) + "\n"


def _write_got10k_annotations(seq_dir: Path, truth: SequenceTruth, video: SyntheticVideo, job: _Job) -> None:
    """groundtruth.txt (0-based x,y,w,h, four decimals; the first row only for test); label files and
    meta_info.ini for train and val."""
    rows = [f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}" for x, y, w, h in truth.box_xywh.astype(np.float64).tolist()]
    if job.split == "test":
        rows = rows[:1]
    (seq_dir / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    if job.split == "test":
        return
    absence = truth.visible_fraction == 0
    for name, values in (("absence.label", absence), ("cover.label", truth.cover),
                         ("cut_by_image.label", truth.cut_by_image)):
        (seq_dir / name).write_text("".join(f"{int(v)}\n" for v in values))
    (seq_dir / "meta_info.ini").write_text(_got10k_meta(video, job))


def make_video(config: SceneConfig, seed: int, dataset: str, split: str, index: int,
               shape_kind: str | None = None) -> SyntheticVideo:
    """The video that the generators write for (seed, dataset, split, index); a written sequence's truth holds its
    index and shape_kind, so tests can re-render it."""
    return SyntheticVideo(config, sequence_rng(seed, dataset, split, index), shape_kind)


def _run_job(job: _Job) -> SequenceTruth:
    """Plan, render and write one sequence; return its truth."""
    video = make_video(job.config, job.seed, job.dataset, job.split, job.index, job.shape_kind)
    seq_dir = Path(job.seq_dir)
    frame_dir = seq_dir / "img" if job.dataset == "lasot" else seq_dir
    boxes, visible, in_frame = _render_and_write_frames(video, frame_dir)
    object_class = seq_dir.parent.name if job.dataset == "lasot" else video.shape_kind
    truth = SequenceTruth(job.name, job.split, object_class, job.index, video.shape_kind, boxes, visible, in_frame)
    if job.dataset == "lasot":
        _write_lasot_annotations(seq_dir, truth, video.description)
    else:
        _write_got10k_annotations(seq_dir, truth, video, job)
    return truth


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _run_jobs(jobs: list[_Job], workers: int) -> list[SequenceTruth]:
    """Run jobs in order, in ``workers`` processes (in this process when workers <= 1). Workers are spawned, not
    forked, so a parent holding thread pools (torch, OpenCV) cannot deadlock them."""
    if workers <= 1 or len(jobs) <= 1:
        return [_run_job(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                             initializer=_init_worker) as pool:
        return list(pool.map(_run_job, jobs))


def _write_truth(root: Path, dataset: str, seed: int, truths: list[SequenceTruth]) -> None:
    payload = {"generator": __name__, "dataset": dataset, "seed": seed,
               "box_format": "xywh, 0-based pixels, zeros when out of view",
               "sequences": [truth.to_json() for truth in truths]}
    (root / TRUTH_FILE).write_text(json.dumps(payload, separators=(",", ":")) + "\n")


def _lasot_class_names(num_classes: int) -> list[str]:
    """Shape kinds as LaSOT classes; beyond five, a numeric suffix (``blob2``) keeps names free of '-'."""
    return [SHAPE_KINDS[i % len(SHAPE_KINDS)] + (str(i // len(SHAPE_KINDS) + 1) if i >= len(SHAPE_KINDS) else "")
            for i in range(num_classes)]


def _lasot_jobs(root: Path, classes: int, train_per_class: int, test_per_class: int, config: SceneConfig,
                seed: int) -> list[_Job]:
    jobs = []
    for class_index, class_name in enumerate(_lasot_class_names(classes)):
        for k in range(train_per_class + test_per_class):
            split = "train" if k < train_per_class else "test"
            name = f"{class_name}-{k + 1}"
            jobs.append(_Job("lasot", str(root / class_name / name), name, split,
                             class_index * 1000 + k, seed, config, SHAPE_KINDS[class_index % len(SHAPE_KINDS)]))
    return jobs


def _finish_lasot(root: Path, jobs: list[_Job], truths: list[SequenceTruth], seed: int) -> dict[str, SequenceTruth]:
    for split, file_name in (("train", "training_set.txt"), ("test", "testing_set.txt")):
        (root / file_name).write_text("".join(f"{job.name}\n" for job in jobs if job.split == split))
    _write_truth(root, "lasot", seed, truths)
    return {truth.name: truth for truth in truths}


def _got10k_jobs(root: Path, counts: dict[str, int], config: SceneConfig, seed: int) -> list[_Job]:
    jobs = []
    for split, count in counts.items():
        if split not in GOT10K_SPLIT_PREFIX:
            raise ValueError(f"unknown GOT-10k split {split!r}; expected one of {tuple(GOT10K_SPLIT_PREFIX)}")
        for i in range(count):
            name = f"{GOT10K_SPLIT_PREFIX[split]}_{i + 1:06d}"
            jobs.append(_Job("got10k", str(root / split / name), name, split, i, seed, config))
    return jobs


def _finish_got10k(root: Path, jobs: list[_Job], truths: list[SequenceTruth], seed: int) -> dict[str, SequenceTruth]:
    for split in GOT10K_SPLIT_PREFIX:
        names = [job.name for job in jobs if job.split == split]
        if names:
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / "list.txt").write_text("".join(f"{name}\n" for name in names))
    _write_truth(root, "got10k", seed, truths)
    return {truth.name: truth for truth in truths}


# ----------------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------------

def generate_lasot(root: str | Path, classes: int = 5, train_per_class: int = 4, test_per_class: int = 1,
                   config: SceneConfig | None = None, seed: int = 0, workers: int = 1) -> dict[str, SequenceTruth]:
    """Write a LaSOT-format dataset under ``root`` (see the module docstring); returns name -> truth.

    Sequences ``<class>-1 .. <class>-train_per_class`` go to training_set.txt, the rest to testing_set.txt.
    """
    root = Path(root)
    jobs = _lasot_jobs(root, classes, train_per_class, test_per_class, config or SceneConfig(), seed)
    truths = _finish_lasot(root, jobs, _run_jobs(jobs, workers), seed)
    logger.info("LaSOT: wrote %d sequences under %s", len(truths), root)
    return truths


def generate_got10k(root: str | Path, counts: dict[str, int] | None = None, config: SceneConfig | None = None,
                    seed: int = 0, workers: int = 1) -> dict[str, SequenceTruth]:
    """Write a GOT-10k-format dataset under ``root`` with ``counts`` sequences per split (default train 16,
    val 3, test 3); returns name -> truth (full truth for test too, although its groundtruth.txt has one row)."""
    root = Path(root)
    jobs = _got10k_jobs(root, counts or {"train": 16, "val": 3, "test": 3}, config or SceneConfig(), seed)
    truths = _finish_got10k(root, jobs, _run_jobs(jobs, workers), seed)
    logger.info("GOT-10k: wrote %d sequences under %s", len(truths), root)
    return truths


def generate_all(root: str | Path, preset: str | Preset = "quickstart", seed: int = 0,
                 formats: tuple[str, ...] = ("lasot", "got10k"), workers: int = 1,
                 scene: SceneConfig | None = None) -> dict[str, dict[str, SequenceTruth]]:
    """Write every requested format of a preset under ``root/<format>``; returns format -> name -> truth.

    All sequences of all formats share one process pool. ``scene`` replaces the preset's scene (frame counts
    still come from the preset).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    unknown = set(formats) - {"lasot", "got10k"}
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; expected lasot and/or got10k")
    root = Path(root)
    base = scene or preset.scene
    jobs = {}
    if "lasot" in formats:
        jobs["lasot"] = _lasot_jobs(root / "lasot", preset.lasot_classes, preset.lasot_train_per_class,
                                    preset.lasot_test_per_class, replace(base, frames=preset.lasot_frames), seed)
    if "got10k" in formats:
        jobs["got10k"] = _got10k_jobs(root / "got10k", preset.got10k_counts,
                                      replace(base, frames=preset.got10k_frames), seed)
    flat = [job for dataset_jobs in jobs.values() for job in dataset_jobs]
    truths = _run_jobs(flat, workers)
    result, start = {}, 0
    finishers = {"lasot": _finish_lasot, "got10k": _finish_got10k}
    for dataset, dataset_jobs in jobs.items():
        chunk = truths[start:start + len(dataset_jobs)]
        start += len(dataset_jobs)
        result[dataset] = finishers[dataset](root / dataset, dataset_jobs, chunk, seed)
        logger.info("%s: wrote %d sequences under %s", dataset, len(chunk), root / dataset)
    return result
