"""Procedural scenes: targets, backgrounds, distractors, occluders, camera and the per-frame truth.

See the package docstring for what is drawn and how the annotations follow from it.
"""
from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass
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
    "quickstart": Preset(scene=SceneConfig(), lasot_classes=5, lasot_train_per_class=4, lasot_test_per_class=2,
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
