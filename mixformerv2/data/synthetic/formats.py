"""Writing synthetic videos in the LaSOT and GOT-10k on-disk formats, in parallel and deterministically."""
from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np


from .scene import (GOT10K_SPLIT_PREFIX, PRESETS, SHAPE_KINDS, TRUTH_FILE, Preset, SceneConfig, SequenceTruth,
                    SyntheticVideo, frame_truth, sequence_rng)

logger = logging.getLogger(__name__)
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
