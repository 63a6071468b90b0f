"""Calibration inputs for static int8 quantisation of the per-frame graph: tracker crops of synthetic scenes, or of
a dataset's sequences (``calibrate_export``, ``tools/export.py --calibrate``).

Static quantisation fixes each quantised activation's range before deployment, from the ranges it takes on
representative inputs. Here those are what the tracker feeds the per-frame graph: a search crop around a jittered
target box of a later frame, and the template cache (``template_kv``) of a template crop from an earlier frame,
cut and normalised exactly as ``MixFormerV2Tracker`` does. The frames are rendered by the package's synthetic scene
generator (``mixformerv2.data.synthetic``) with its own seed, so no dataset is needed and no test sequence is
seen. ``calibrate_export`` calibrates on a dataset instead (real footage: e.g. a training split, not the benchmark
you evaluate on) and stores the quantised graph in an export folder, where OpenVINO int8 finds it.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..config.schema import ModelConfig, TestConfig
from ..crop import crop_square_xywh
from ..imaging import normalize_image
from ..utils.io import atomic_write_bytes, sha256_file

logger = logging.getLogger(__name__)

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
        patch = crop_square_xywh(image, box, factor, size, padding_mask=False).image
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


FramePair = tuple[np.ndarray, list[float], np.ndarray, list[float]]


def sequence_frame_pairs(sequences, count: int = 24, gap: int = 20, seed: int = CALIBRATION_SEED
                         ) -> list[FramePair]:
    """Up to ``count`` (template frame, its box, search frame, its box) pairs (frames RGB uint8, boxes xywh in
    pixels) from dataset sequences, spread evenly over them: in each, a seeded frame with a valid box and the valid
    frame nearest to ``gap`` frames later (valid: ``Sequence.visible``).

    sequences: ``data.sequence.Sequence`` objects, as a list or a dataset reader (``len`` and ``[i]``: only the
    sequences picked are loaded). Sequences without a valid box give no pair (``ValueError`` when none gives one);
    a missing or corrupt frame raises the reader's one-line error (``FileNotFoundError`` / ``FrameError``)."""
    from ..data.sequence import read_frame_rgb

    total = len(sequences)
    picks = np.arange(count) % total if count >= total else np.linspace(0, total - 1, count).round().astype(int)
    rng = np.random.default_rng(seed)
    loaded, pairs = {}, []
    for pick in picks.tolist():
        if pick not in loaded:
            sequence = sequences[pick]
            loaded[pick] = sequence, np.flatnonzero(sequence.visible)  # annotated, positive size, in view
        sequence, valid = loaded[pick]
        if not len(valid):
            continue
        first = int(rng.choice(valid))
        second = int(valid[np.argmin(np.abs(valid - (first + gap)))])
        pairs.append((read_frame_rgb(sequence.frame_paths[first]), [float(v) for v in sequence.gt_xywh[first]],
                      read_frame_rgb(sequence.frame_paths[second]), [float(v) for v in sequence.gt_xywh[second]]))
    if not pairs:
        raise ValueError(f"none of the {len(loaded)} sequences picked has a frame with a valid box to calibrate on")
    return pairs


def calibrate_export(export_dir: str | Path, model: nn.Module, cfg: ModelConfig, pairs: Sequence[FramePair],
                     source: str, settings: TestConfig | None = None, checkpoint_sha256: str | None = None) -> dict:
    """Quantise the per-frame graph of an export folder for OpenVINO int8 with activation ranges from ``pairs``
    (``sequence_frame_pairs``), write it as ``search_step.int8.onnx`` and list it in the manifest as
    ``INT8_STEP`` with its calibration (``source``: where the frames come from, in words; pair count; the crop
    factors of ``settings``). model: the fp32 network the folder was exported from (verified against ``cfg`` and
    ``checkpoint_sha256`` where given). Returns the manifest."""
    from .onnx import INT8_STEP, STEP, graph_path, read_export, write_manifest
    from .quantize import quantize_static_int8

    export_dir = Path(export_dir)
    manifest = read_export(export_dir, cfg, checkpoint_sha256)
    settings = settings or TestConfig()
    feeds = calibration_feeds(model, cfg, frames=pairs, settings=settings)
    out = export_dir / f"{STEP}.int8.onnx"
    with tempfile.TemporaryDirectory(prefix="mixformerv2_calibrate_") as tmp:
        quantized = quantize_static_int8(graph_path(export_dir, manifest, STEP), Path(tmp) / out.name, feeds)
        atomic_write_bytes(out, quantized.read_bytes())
    step = manifest["graphs"][STEP]
    manifest["graphs"][INT8_STEP] = {
        "file": out.name, "sha256": sha256_file(out), "inputs": step["inputs"], "outputs": step["outputs"],
        "quantization": "static int8 (QDQ): backbone linear layers, int8 weights per output channel, uint8 "
                        "activations", "runtime": "openvino",
        "calibration": {"source": source, "pairs": len(feeds), "template_factor": settings.template_factor,
                        "search_factor": settings.search_factor}}
    write_manifest(export_dir, manifest)
    logger.info("%s: int8 step graph calibrated on %s (%d frame pairs)", out, source, len(feeds))
    return manifest
