"""Run a tracker over benchmark sequences: timing, result files with provenance, resume, parallel workers.

Layout of one run (``results_dir = <results>/<run>/<dataset>``):

* ``<sequence>.txt``: one ``x,y,w,h`` row per frame (frame 0 = the initial box), comma-separated, at full
  precision (shortest round-trip text of each float64: never rounded);
* ``<sequence>_time.txt``: seconds per frame of the tracker call (frame 0 = ``initialize``), image reading excluded;
* ``run.json``: resolved config, checkpoint SHA-256, code version, tracker settings, what the tracker really ran
  (``tracker``: ``forward_path`` ``cached`` or ``full``, ``backend`` ``torch``/``onnxruntime``/``openvino`` and
  ``precision`` ``fp32``/``bf16``/``fp16``/``int8``; for OpenVINO int8 also ``calibration``, what its activation
  ranges were calibrated on) and ``box_rule``.

``box_rule`` is ``truncate_int``: the official runner saves ``astype(int)`` boxes and the published numbers come from
those, so ``evaluation/results.py`` and ``evaluation/packing.py`` score and pack our files truncated toward zero by
default (full precision on request), while the files keep every digit.

``run.json`` is written once the tracker is built (so a run that cannot start leaves nothing behind), before any
result. Every file is written atomically, the box file last, so a killed run leaves only complete sequences. A
re-run of the same folder skips the complete sequences, but only when ``run.json`` matches; a different checkpoint,
model, setting, forward path, backend or precision raises ``RunMismatchError`` instead of mixing results. Only results that exist lock
a folder: a ``run.json`` beside no box file is replaced by the next run's.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Sequence as SequenceType

import numpy as np
from tqdm import tqdm

from ..config import Config, TestConfig, config_to_dict
from ..data.sequence import Sequence, read_frame_rgb
from ..evaluation.results import MANIFEST, MATCH_KEYS, TRUNCATE_INT, manifest_differences, shard_manifest_name
from ..utils.device import available_cpus, default_device, worker_devices
from ..utils.io import atomic_write_text, sha256_file
from ..utils.version import code_version
from .shards import shard_sequences
from .tracker import RANDOM_INIT_SEED, build_tracker
from .workers import TrackerSetupError, WorkerDiedError, WorkerPool, first_line

logger = logging.getLogger(__name__)

# The scoring rule written into run.json: the official runner saved truncated boxes, so ours are scored that way.
BOX_RULE = TRUNCATE_INT

__all__ = ["MANIFEST", "RunMismatchError", "RunSummary", "SequenceResult", "TrackerSetupError", "WorkerDiedError",
           "describe_tracker", "format_boxes", "make_manifest", "run_benchmark", "run_sequences", "track_sequence"]


class RunMismatchError(RuntimeError):
    """A results folder holds results of another checkpoint, model or tracker setting."""


@dataclass
class SequenceResult:
    """Output of one sequence: boxes_xywh (N, 4) float64 frame pixels, times (N,) seconds, scores (N,) (NaN on
    frame 0 and for a model without a score head)."""

    boxes_xywh: np.ndarray
    times: np.ndarray
    scores: np.ndarray


@dataclass
class RunSummary:
    """Which sequences were tracked now, skipped as already complete, or failed (name -> error message); the frames
    tracked now, the seconds the tracker calls took (summed over the sequences, image reading excluded) and the wall
    time of the run."""

    results_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    tracker_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def mean_fps(self) -> float:
        """Frames tracked now / seconds of tracker calls (NaN when nothing was tracked)."""
        return self.frames / self.tracker_seconds if self.tracker_seconds > 0 else float("nan")

    def line(self) -> str:
        """The run in one line: sequences, frames, mean FPS, wall time."""
        count = len(self.done) + len(self.skipped) + len(self.failed)
        return (f"{self.results_dir}: {count} sequences ({len(self.done)} tracked, {len(self.skipped)} already "
                f"complete, {len(self.failed)} failed), {self.frames} frames tracked, mean {self.mean_fps:.1f} FPS "
                f"(frames / tracker seconds), wall time {self.wall_seconds:.1f} s")


# ------------------------------------------------------------------------------------------------ one sequence
def track_sequence(tracker, sequence: Sequence) -> SequenceResult:
    """Run ``tracker`` over ``sequence``; frame 0 is initialised from ``sequence.init_box_xywh``.

    Only the tracker calls are timed. A missing or corrupt frame raises naming the sequence and the file.
    """
    n = len(sequence)
    boxes = np.zeros((n, 4), dtype=np.float64)
    times = np.zeros(n, dtype=np.float64)
    scores = np.full(n, np.nan, dtype=np.float64)
    for i, path in enumerate(sequence.frame_paths):
        try:
            image = read_frame_rgb(path)
        except OSError as err:  # FileNotFoundError included
            raise OSError(f"sequence {sequence.name}: frame {i}: {err}") from err
        start = time.perf_counter()
        if i == 0:
            tracker.initialize(image, sequence.init_box_xywh)
            boxes[0] = sequence.init_box_xywh
        else:
            out = tracker.track(image)
            boxes[i] = out.box_xywh
            if out.score is not None:
                scores[i] = out.score
        times[i] = time.perf_counter() - start
    return SequenceResult(boxes, times, scores)


def format_boxes(boxes_xywh: np.ndarray) -> str:
    """(N, 4) boxes -> text, one comma-separated row per frame, each value the shortest text that reads back as the
    same float64 (``repr``), so scoring can truncate exactly as the official runner does."""
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in boxes_xywh)


def format_times(times: np.ndarray) -> str:
    return "".join(f"{t:.6f}\n" for t in times)


def result_paths(results_dir: Path, name: str) -> tuple[Path, Path]:
    """(box file, time file) of one sequence."""
    return results_dir / f"{name}.txt", results_dir / f"{name}_time.txt"


def write_sequence_result(results_dir: Path, name: str, result: SequenceResult) -> None:
    """Write the time file, then the box file, each atomically (the box file marks the sequence complete)."""
    box_path, time_path = result_paths(results_dir, name)
    atomic_write_text(time_path, format_times(result.times))
    atomic_write_text(box_path, format_boxes(result.boxes_xywh))


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def is_complete(results_dir: Path, sequence: Sequence) -> bool:
    """True when both result files exist and hold one row per frame."""
    box_path, time_path = result_paths(results_dir, sequence.name)
    if not (box_path.is_file() and time_path.is_file()):
        return False
    n = len(sequence)
    return _count_lines(box_path) == n and _count_lines(time_path) == n


# --------------------------------------------------------------------------------------------------- manifest
def run_settings(test_cfg: TestConfig, dataset: str) -> dict:
    """The tracker settings of a run (``test_cfg`` already specialised to ``dataset``)."""
    settings = {k: v for k, v in asdict(test_cfg).items() if k != "datasets"}
    settings.update(dataset=dataset)
    return settings


def describe_tracker(tracker) -> dict:
    """What a built tracker really runs, as it reports it: ``{"forward_path": "cached" | "full", "backend": ...,
    "precision": ...}`` (``"unknown"`` for what a tracker does not say), and ``"calibration"`` for a statically
    quantised network (what its int8 activation ranges were calibrated on)."""
    described = {key: getattr(tracker, key, "unknown") for key in ("forward_path", "backend", "precision")}
    if getattr(tracker, "calibration", None):
        described["calibration"] = tracker.calibration
    return described


def make_manifest(cfg: Config, checkpoint: str | Path | None, dataset: str,
                  checkpoint_sha256: str | None = None) -> dict:
    """The ``run.json`` content of a run (``cfg`` the resolved config, not yet specialised to ``dataset``), without
    the ``tracker`` entry, which ``run_sequences`` adds from the built tracker."""
    if checkpoint_sha256 is None:
        checkpoint_sha256 = sha256_file(checkpoint) if checkpoint is not None else "none (random weights)"
    resolved = config_to_dict(cfg)
    return {
        "dataset": dataset,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "checkpoint_sha256": checkpoint_sha256,
        "weights": "checkpoint" if checkpoint is not None else f"random-init (seed {RANDOM_INIT_SEED})",
        "model": resolved["model"],
        "settings": run_settings(cfg.test.for_dataset(dataset), dataset),
        "box_rule": BOX_RULE,
        "code_version": code_version(),
        "config": resolved,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def existing_results(results_dir: Path) -> list[str]:
    """Names of the sequences whose box file exists in ``results_dir`` (written last, so: finished sequences)."""
    return sorted(p.stem for p in results_dir.glob("*.txt") if not p.stem.endswith("_time"))


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunMismatchError(f"{path}: unreadable ({err}); refusing to add results to a folder of unknown "
                               "origin (choose another --run name or delete the folder)") from None
    if not isinstance(manifest, dict):
        raise RunMismatchError(f"{path}: not a JSON object; refusing to add results to a folder of unknown origin")
    return manifest


def check_results_dir(results_dir: Path, manifest: dict) -> dict | None:
    """Check that a run with ``manifest`` may add results to ``results_dir``; returns the ``run.json`` that locks
    the folder (None when nothing does).

    Only existing results lock a folder: with box files present, the entries of ``MATCH_KEYS`` that ``manifest``
    has must equal the existing ``run.json``'s (``RunMismatchError`` lists the differences), and box files without
    a ``run.json`` (origin unknown) are refused. A ``run.json`` beside no box file locks nothing.
    """
    path = results_dir / MANIFEST
    finished = existing_results(results_dir) if results_dir.is_dir() else []
    if not path.is_file():
        if results_dir.is_dir() and any(results_dir.glob("*.txt")):
            raise RunMismatchError(f"{results_dir}: holds result files but no {MANIFEST}; refusing to add to results "
                                   "of unknown origin (choose another --run name or delete the folder)")
        return None
    if not finished:
        return None
    old = _read_manifest(path)
    diffs = manifest_differences(old, manifest, tuple(k for k in MATCH_KEYS if k in manifest))
    if diffs:
        raise RunMismatchError(
            f"{path}: these results were produced with a different checkpoint or settings; refusing to mix "
            f"them (choose another --run name or delete the folder):\n  " + "\n  ".join(diffs))
    return old


def write_manifest(results_dir: Path, manifest: dict) -> None:
    """Check ``results_dir`` against the complete ``manifest`` and write it as ``run.json``; a folder locked by a
    matching ``run.json`` keeps it (the provenance of its first results), with a warning when the code differs.

    A shard's manifest (a ``"shard"`` entry: index, count, sequences) is also written as its own
    ``run.shard-K-of-N.json``, which ``evaluation.results.check_shards`` compares with ``run.json`` before scoring:
    shards started at the same time, or run apart and copied together, cannot mix settings unnoticed.
    """
    old = check_results_dir(results_dir, manifest)
    if "shard" in manifest:
        shard = manifest["shard"]
        atomic_write_text(results_dir / shard_manifest_name(shard["index"], shard["count"]),
                          json.dumps(manifest, indent=2) + "\n")
        manifest = {k: v for k, v in manifest.items() if k != "shard"}
    path = results_dir / MANIFEST
    if old is not None:
        if old.get("code_version") != manifest["code_version"]:
            logger.warning("%s: resuming results of code version %s with code version %s", path,
                           old.get("code_version"), manifest["code_version"])
        return
    if path.is_file():
        logger.info("%s: replaced; the run that wrote it left no results", path)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------- running
def _track_and_write(tracker, task: tuple[Sequence, Path]) -> tuple[str, str | None, int, float]:
    """Track one sequence and write its files -> (name, error message or None, frames, tracker seconds)."""
    sequence, results_dir = task
    try:
        result = track_sequence(tracker, sequence)
        write_sequence_result(results_dir, sequence.name, result)
    except Exception as err:  # a failing sequence must not stop the others; reported by run_sequences
        logger.debug("sequence %s failed", sequence.name, exc_info=True)
        return sequence.name, f"{type(err).__name__}: {err}", 0, 0.0
    return sequence.name, None, len(sequence), float(result.times.sum())


def _build_tracker(tracker_factory: Callable):
    """Build the tracker in this process; any failure becomes a one-line ``TrackerSetupError``."""
    try:
        return tracker_factory()
    except Exception as err:  # re-raised with its first line; the cause stays chained for --debug
        raise TrackerSetupError(first_line(err)) from err


def run_sequences(tracker_factory: Callable | SequenceType[Callable], sequences: Iterable[Sequence],
                  results_dir: str | Path, manifest: dict, workers: int = 1, progress: bool = True) -> RunSummary:
    """Track every sequence not yet complete in ``results_dir``.

    tracker_factory: picklable zero-argument callable returning a tracker (built once per worker), or one per
    worker (worker k uses entry k modulo their number: how workers get devices of their own).
    manifest: ``make_manifest``'s ``run.json`` content; the built tracker's ``describe_tracker`` is added as
    ``"tracker"`` (what really runs), and the result is checked against an existing ``run.json`` and written before
    the first result.
    workers: number of processes; ``<= 1`` runs in this process. Each spawned worker gets
    ``cpu_count // processes`` torch threads.

    Raises ``RunMismatchError`` (folder of another run), ``TrackerSetupError`` (the tracker cannot be built, in this
    process or in any worker: the run ends at once) or ``WorkerDiedError`` (a worker process was killed or crashed).
    A sequence that fails is reported in the summary and the others go on.
    """
    start = time.perf_counter()
    results_dir = Path(results_dir)
    check_results_dir(results_dir, manifest)
    sequences = list(sequences)
    factories = list(tracker_factory) if isinstance(tracker_factory, (list, tuple)) else [tracker_factory]
    summary = RunSummary(results_dir)
    todo = []
    for seq in sequences:
        if is_complete(results_dir, seq):
            summary.skipped.append(seq.name)
        else:
            todo.append(seq)
    if summary.skipped:
        logger.info("%s: %d of %d sequences already complete, skipped", results_dir, len(summary.skipped),
                    len(sequences))
    if not todo:
        summary.wall_seconds = time.perf_counter() - start
        return summary
    tasks = [(seq, results_dir) for seq in todo]
    bar = tqdm(total=len(tasks), desc=results_dir.parent.name + "/" + results_dir.name, unit="seq",
               disable=not progress)
    try:
        if workers <= 1:
            tracker = _build_tracker(factories[0])
            write_manifest(results_dir, {**manifest, "tracker": describe_tracker(tracker)})
            _collect(map(partial(_track_and_write, tracker), tasks), summary, bar)
        else:
            processes = min(workers, len(tasks))
            threads = max(1, available_cpus() // processes)
            pool_factories = [factories[k % len(factories)] for k in range(processes)]
            with WorkerPool(pool_factories, describe_tracker, _track_and_write, threads) as pool:
                write_manifest(results_dir, {**manifest, "tracker": pool.start()})
                _collect(pool.run(tasks), summary, bar)
    finally:
        bar.close()
        summary.wall_seconds = time.perf_counter() - start
    for name, message in summary.failed.items():
        logger.error("sequence %s failed: %s", name, message)
    return summary


def _collect(outcomes, summary: RunSummary, bar) -> None:
    for name, error, frames, seconds in outcomes:
        if error is None:
            summary.done.append(name)
            summary.frames += frames
            summary.tracker_seconds += seconds
            fps = frames / seconds if seconds > 0 else float("nan")
            logger.info("%s: %d frames, %.1f FPS", name, frames, fps)
        else:
            summary.failed[name] = error
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed))


# ------------------------------------------------------------------------------------------------- benchmark
def settings_key(cfg: Config, dataset: str, split: str | None = None) -> str:
    """The name under which a benchmark's settings and results live: ``<dataset>_<split>`` when the config has
    settings for it (``got10k`` + ``test`` -> ``got10k_test``), else ``<dataset>``."""
    if split and f"{dataset}_{split}".lower() in cfg.test.datasets:
        return f"{dataset}_{split}".lower()
    return dataset.lower()


def run_benchmark(cfg: Config, checkpoint: str | Path | None, sequences: Iterable[Sequence], dataset: str,
                  results_root: str | Path = "results", run_name: str = "default", device: str | None = None,
                  workers: int = 1, cached: bool | None = None, progress: bool = True,
                  folder: str | None = None, backend: str = "torch", precision: str | None = None,
                  export_dir: str | Path | None = None, compile_step: bool = False,
                  shard: tuple[int, int] | None = None, cuda_count: int | None = None) -> RunSummary:
    """Track ``sequences`` of benchmark ``dataset`` (a settings key, see ``settings_key``) into
    ``<results_root>/<run_name>/<folder or dataset>/``; each worker builds the tracker once with
    ``build_tracker``, on its device from ``utils.device.worker_devices`` (``cuda`` without an index: round robin
    over the visible GPUs, ``cuda_count`` of them; default: as many as torch sees).

    shard: ``(K, N)`` tracks only part K of N of ``sequences`` (``tracking.shards.shard_sequences``) and records it
    in ``run.shard-K-of-N.json``; the N parts, run on different machines into one folder, make the whole run.

    cached: ``None`` uses the cached template path where the model has one, ``True`` requires it (a model without
    one is refused with ``TrackerSetupError``), ``False`` runs the full forward. backend, precision, export_dir,
    compile_step: see ``build_tracker``. ``run.json`` records what ran.
    """
    device = device or default_device()
    devices = worker_devices(device, workers, cuda_count)
    manifest = make_manifest(cfg, checkpoint, dataset)
    manifest.update(results_folder=folder or dataset, device=str(device), devices=[str(d) for d in devices])
    sequences = list(sequences)
    if shard is not None:
        sequences = shard_sequences(sequences, *shard)
        manifest["shard"] = {"index": shard[0], "count": shard[1], "sequences": [s.name for s in sequences]}
        logger.info("shard %d/%d: %d sequences, %d frames", shard[0], shard[1], len(sequences),
                    sum(len(s) for s in sequences))
    if len(set(devices)) > 1:
        logger.info("workers on %s", ", ".join(f"{k + 1}: {d}" for k, d in enumerate(devices)))
    factories = [partial(build_tracker, cfg, checkpoint, d, dataset, cached, backend, precision,
                         None if export_dir is None else str(export_dir), compile_step) for d in devices]
    results_dir = Path(results_root) / run_name / (folder or dataset)
    return run_sequences(factories, sequences, results_dir, manifest, workers=workers, progress=progress)
