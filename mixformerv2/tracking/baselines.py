"""Trivial trackers written as result folders in the runner's layout, so that ``tools/analyze.py`` scores them like
any run: the floor a trained tracker has to beat.

``hold_first_box``: every frame's box is the initial box (frame 0's ground truth, as the benchmark stores it). A
tracker that learned nothing about appearance but keeps its first box scores this; on a benchmark where the target
moves little it is not zero, which is why the quickstart reports it.

Layout (as ``runner.run_benchmark``): ``<results>/<run>/<dataset>/<sequence>.txt`` and ``<sequence>_time.txt``
(zero seconds per frame: nothing is computed) and ``run.json`` with ``"baseline"``, a description, no checkpoint and
the runner's ``box_rule``. A re-run skips complete sequences; a folder holding results of a model (another
``run.json``) is refused with ``RunMismatchError``.

The other quickstart baseline, a trained model without online template update, is an ordinary run with the config
overrides of :func:`no_online_update_overrides` (``tools/test.py ... --set <override> --run <name>``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data.sequence import Sequence
from ..utils.version import code_version
from .runner import BOX_RULE, RunSummary, SequenceResult, is_complete, write_manifest, write_sequence_result

logger = logging.getLogger(__name__)

HOLD_FIRST_BOX = "hold_first_box"
#: baseline name -> what it predicts (written into run.json)
BASELINES = {HOLD_FIRST_BOX: "every frame is the initial box (frame 0's ground truth); no image is looked at"}


def hold_first_box(sequence: Sequence) -> SequenceResult:
    """The ``hold_first_box`` result of one sequence: (N, 4) copies of ``sequence.init_box_xywh``, zero times,
    NaN scores. A non-finite initial box raises ``ValueError`` naming the sequence."""
    init = np.asarray(sequence.init_box_xywh, dtype=np.float64)
    if not np.isfinite(init).all():
        raise ValueError(f"sequence {sequence.name}: the initial box {init.tolist()} is not finite")
    n = len(sequence)
    return SequenceResult(np.tile(init, (n, 1)), np.zeros(n), np.full(n, np.nan))


def baseline_manifest(name: str, dataset: str, folder: str | None = None) -> dict:
    """The ``run.json`` content of baseline ``name`` on benchmark ``dataset``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return {
        "dataset": dataset,
        "baseline": name,
        "description": BASELINES[name],
        "checkpoint": None,
        "checkpoint_sha256": f"none (baseline {name})",
        "model": None,
        "settings": {"baseline": name, "dataset": dataset},
        "tracker": {"forward_path": "none", "backend": "none", "precision": "none"},
        "box_rule": BOX_RULE,
        "results_folder": folder or dataset,
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


_BASELINE_FNS = {HOLD_FIRST_BOX: hold_first_box}

#: An update interval no sequence reaches (the tracker updates when ``frame % interval == 0``, frame >= 1).
NO_UPDATE_INTERVAL = 2**31 - 1


def no_online_update_overrides(dataset: str) -> list[str]:
    """Config overrides (``--set``) that keep the online template at the initial template for benchmark
    ``dataset`` (a settings key such as ``lasot``): its ``test.datasets`` entry's ``update_interval`` set to
    ``NO_UPDATE_INTERVAL``. The entry is used, not ``test.update_interval``, because an entry that sets the key
    wins over the default (``configs/mixformerv2_b.yaml`` sets it for LaSOT); the entry is created when absent.
    The resulting ``run.json`` records the interval, so these results never mix with the updating run's."""
    return [f"test.datasets.{dataset.lower()}.update_interval={NO_UPDATE_INTERVAL}"]


def run_baseline(sequences: Iterable[Sequence], dataset: str, results_root: str | Path = "results",
                 run_name: str = HOLD_FIRST_BOX, folder: str | None = None,
                 baseline: str = HOLD_FIRST_BOX) -> RunSummary:
    """Write ``baseline``'s results for ``sequences`` of benchmark ``dataset`` into
    ``<results_root>/<run_name>/<folder or dataset>/`` (see the module docstring); complete sequences are
    skipped. Returns the summary (``done``, ``skipped``)."""
    manifest = baseline_manifest(baseline, dataset, folder)
    results_dir = Path(results_root) / run_name / (folder or dataset)
    write_manifest(results_dir, manifest)  # refuses a folder holding another run's results
    summary = RunSummary(results_dir)
    for sequence in sequences:
        if is_complete(results_dir, sequence):
            summary.skipped.append(sequence.name)
            continue
        write_sequence_result(results_dir, sequence.name, _BASELINE_FNS[baseline](sequence))
        summary.done.append(sequence.name)
    if summary.skipped:
        logger.info("%s: %d sequences already complete, skipped", results_dir, len(summary.skipped))
    logger.info("%s: %s written for %d sequences", results_dir, baseline, len(summary.done))
    return summary
