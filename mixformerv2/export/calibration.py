"""Calibration inputs for static int8 quantisation of the per-frame graph: tracker crops of synthetic scenes.

Static quantisation fixes each quantised activation's range before deployment, from the ranges it takes on
representative inputs. Here those are what the tracker feeds the per-frame graph: a search crop around a jittered
target box of a later frame, and the template cache (``template_kv``) of a template crop from an earlier frame,
cut and normalised exactly as ``MixFormerV2Tracker`` does. The frames are rendered by the package's synthetic scene
generator (``mixformerv2.data.synthetic``) with its own seed, so no dataset is needed and no test sequence is
seen; callers with their own frames pass ``calibration_feeds(..., frames=...)``.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..config.schema import ModelConfig, TestConfig
from ..crop import crop_square_xywh
from ..imaging import normalize_image

CALIBRATION_SEED = 7919  # the synthetic videos' seed: not the generator's benchmark seeds


def synthetic_frame_pairs(count: int = 24, seed: int = CALIBRATION_SEED, gap: int = 20
                          ) -> Iterable[tuple[np.ndarray, list[float], np.ndarray, list[float]]]:
    """``count`` (template frame, its box, search frame, its box) pairs, ``gap`` frames apart, from synthetic
    videos of the default scene: RGB uint8 frames, boxes xywh in pixels. Frames where the target is out of view are
    skipped."""
    from ..data.synthetic.formats import make_video
    from ..data.synthetic.scene import SceneConfig, frame_truth

    scene, made, index = SceneConfig(), 0, 0
    while made < count:
        video = make_video(scene, seed, "calibration", "calibration", index)
        index += 1
        for start in range(0, len(video) - gap, max(1, (len(video) - gap) // 3)):
            first, second = video.render(start), video.render(start + gap)
            box_t, box_s = frame_truth(first)[0], frame_truth(second)[0]
            if min(box_t[2:].min(), box_s[2:].min()) <= 0:
                continue
            yield (first.image[..., ::-1].copy(), [float(v) for v in box_t],
                   second.image[..., ::-1].copy(), [float(v) for v in box_s])
            made += 1
            if made == count:
                return


@torch.inference_mode()
def calibration_feeds(model: nn.Module, cfg: ModelConfig, frames=None, count: int = 24,
                      settings: TestConfig | None = None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs of the per-frame graph (``{"search", "template_kv"}``, float32) for ``count`` frame pairs.

    model: the fp32 network (its ``encode_templates`` makes the cache); frames: (template frame, box, search frame,
    box) pairs (default ``synthetic_frame_pairs``); settings: the crop factors (default ``TestConfig()``). The search
    box is moved by up to a quarter of its size and rescaled by up to 10 % (``seed``), as the tracker's previous box
    is never exact.
    """
    from .onnx import stack_cache

    settings = settings or TestConfig()
    rng = np.random.default_rng(seed)

    def crop(image, box, factor, size):
        patch = crop_square_xywh(image, box, factor, size).image
        return normalize_image(patch, cfg.image_mean, cfg.image_std).unsqueeze(0)

    feeds = []
    for template_image, template_box, search_image, search_box in frames or synthetic_frame_pairs(count):
        x, y, w, h = search_box
        scale = rng.uniform(0.9, 1.1)
        moved = [x + rng.uniform(-0.25, 0.25) * w, y + rng.uniform(-0.25, 0.25) * h, w * scale, h * scale]
        template = crop(template_image, template_box, settings.template_factor, cfg.template_size)
        cache = stack_cache(model.encode_templates(template, template))
        feeds.append({"search": crop(search_image, moved, settings.search_factor, cfg.search_size).numpy(),
                      "template_kv": cache.numpy()})
    return feeds
