"""Track a model over a whole benchmark and score the results: ``tools/test.py`` then ``tools/analyze.py`` as one
library call, for callers that evaluate several models in a row (``tools/pipeline.py``, the quickstart).

Results go where ``tools/test.py`` puts them (``<results_root>/<run_name>/<dataset>/``, with ``run.json``), so
``tools/analyze.py --results <results_root> --trackers <run_name>`` scores them the same way; a second call reuses
the complete sequences of an identical run.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Config
from ..data.registry import get_dataset
from ..evaluation.metrics import EvaluationError
from ..evaluation.protocols import eval_sequence, evaluate_tracker, get_rules
from ..evaluation.results import box_rules, collect_results
from ..utils.errors import UserError
from .runner import run_benchmark, settings_key

logger = logging.getLogger(__name__)


class TrackingFailedError(UserError):
    """Sequences that could not be tracked (a corrupt frame, ...); the message names the first one."""


def score_results(results_root: str | Path, run_name: str, dataset: str, sequences: list,
                  folder: str | None = None, protocol: str = "pytracking") -> dict:
    """Score the results of ``run_name`` on ``sequences`` (a dataset reader's ``Sequence`` objects) of benchmark
    ``dataset`` with its rules (``evaluation.protocols``); results are read from ``folder`` (default ``dataset``)
    under ``<results_root>/<run_name>/``, boxes under the run's box rule, as ``tools/analyze.py`` does.

    Returns the scalar scores in percent (``auc``, ``precision``, ``norm_precision``, ``op50``, ``op75``; GOT-10k
    val: ``ao``, ``sr50``, ``sr75``) and ``num_sequences``. A missing or malformed result file raises
    ``EvaluationError`` naming it."""
    folder = folder or dataset
    names = [s.name for s in sequences]
    rules = box_rules(results_root, [run_name], folder)
    found, problems = collect_results(results_root, [run_name], folder, names, rules)
    if problems[run_name]:
        first = next(iter(problems[run_name].values()))
        raise EvaluationError(f"{run_name}: {len(problems[run_name])} of {len(names)} sequences have missing or "
                              f"malformed results; first: {first}")
    summary = evaluate_tracker(get_rules(dataset), [eval_sequence(s, dataset) for s in sequences],
                               [found[run_name][n] for n in names], protocol)
    scores = {k: float(v) for k, v in summary.items() if isinstance(v, (float, int, np.floating))}
    scores["num_sequences"] = len(names)
    return scores


def track_and_score(cfg: Config, checkpoint: str | Path, dataset: str, root: str | None = None,
                    split: str | None = None, results_root: str | Path = "results", run_name: str = "default",
                    device: str | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Track every sequence of ``dataset`` (registry name, ``root``, ``split``) with ``cfg.model`` and the weights
    ``checkpoint`` into ``<results_root>/<run_name>/``, then score them (``score_results``). Tracker settings are
    ``cfg.test`` for that benchmark. Raises ``TrackingFailedError`` naming the first sequence that failed."""
    reader = get_dataset(dataset, root=root, split=split)
    sequences = [reader[i] for i in range(len(reader))]
    key = settings_key(cfg, dataset, split)
    folder = f"{dataset}_{split}".lower() if split else key  # the folder tools/test.py writes
    summary = run_benchmark(cfg, checkpoint, sequences, key, results_root=results_root, run_name=run_name,
                            device=device, workers=workers, progress=progress, folder=folder)
    if summary.failed:
        name, error = sorted(summary.failed.items())[0]
        raise TrackingFailedError(f"{summary.results_dir}: {len(summary.failed)} sequence(s) failed; first {name}: "
                                  f"{error}")
    scores = score_results(results_root, run_name, dataset, sequences, folder)
    logger.info("%s on %s: %s", run_name, folder, ", ".join(f"{k} {v:.2f}" for k, v in scores.items()
                                                             if k != "num_sequences"))
    return scores
