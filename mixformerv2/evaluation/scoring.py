"""Scoring result folders on a benchmark: the library calls behind ``tools/analyze.py`` and ``tools/reproduce.py``.

``load_eval_sequences`` reads a benchmark's ground truth through the dataset registry, ``score_trackers`` scores
already-read results (``results.collect_results``) with ``protocols.evaluate_tracker``, and ``score_runs`` does both
reading and scoring for callers that want every sequence scored or an error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.registry import get_dataset
from .metrics import EvaluationError
from .protocols import EvalSequence, eval_sequence, evaluate_tracker, get_rules
from .results import AppliedRule, BoxPolicy, box_rules, collect_results, find_result_files


def _read_flags(path: Path) -> np.ndarray:
    text = path.read_text(encoding="utf-8").replace(",", " ").split()
    return np.array([float(v) for v in text]) == 1


def load_eval_sequences(dataset: str, root: str | Path | None = None,
                        absent_dir: str | Path | None = None) -> list[EvalSequence]:
    """The ground truth of every sequence of registry dataset ``dataset`` (at ``root``, default: the registry's
    root resolution), in the reader's order. absent_dir: a folder of the toolkit's absent flags ``<seq>.txt``
    (TNL2K). Raises the reader's ``ValueError``/``FileNotFoundError`` and ``KeyError`` for an unknown benchmark."""
    get_rules(dataset)
    reader = get_dataset(dataset, root=root)
    sequences = []
    for name in reader.sequence_names:
        absent = _read_flags(Path(absent_dir) / f"{name}.txt") if absent_dir else None
        sequences.append(eval_sequence(reader[name], dataset, absent))
    return sequences


def score_trackers(results_dir: str | Path, trackers: list[str], dataset: str, sequences: list[EvalSequence],
                   found: dict[str, dict[str, list[np.ndarray]]], protocol: str = "pytracking",
                   validity: str = "wh", exclude_invalid_frames: bool = False) -> dict[str, dict]:
    """Score each tracker's runs ``found[tracker][sequence]`` (``collect_results``) over ``sequences`` (each must
    have results for every tracker); the result files are named in warnings and errors.

    Returns ``{tracker: summary}`` as ``evaluate_tracker`` returns it (percent). An ``EvaluationError`` is
    re-raised with the tracker's name in front.
    """
    rules = get_rules(dataset)
    summaries = {}
    for tracker in trackers:
        try:
            sources = [[str(p) for p in find_result_files(results_dir, tracker, dataset, s.name)] for s in sequences]
            summaries[tracker] = evaluate_tracker(rules, sequences, [found[tracker][s.name] for s in sequences],
                                                  protocol, validity, exclude_invalid_frames, sources)
        except EvaluationError as err:
            raise EvaluationError(f"{tracker}: {err}") from err
    return summaries


def score_runs(results_dir: str | Path, trackers: list[str], dataset: str, sequences: list[EvalSequence],
               policy: BoxPolicy = BoxPolicy(), protocol: str = "pytracking"
               ) -> tuple[dict[str, dict], dict[str, AppliedRule]]:
    """Read and score every tracker's results on all ``sequences`` under the box rules of ``policy``.

    Returns ``({tracker: summary}, {tracker: applied box rule})``. A tracker with a missing or malformed result
    file raises ``EvaluationError`` naming the tracker, how many sequences lack results and the first problem.
    """
    applied = box_rules(results_dir, trackers, dataset, policy)
    found, problems = collect_results(results_dir, trackers, dataset, [s.name for s in sequences], applied)
    for tracker, per_seq in problems.items():
        if per_seq:
            raise EvaluationError(f"{tracker}: {len(per_seq)} of {len(sequences)} {dataset} sequences have missing "
                                  f"or malformed results, e.g. {next(iter(per_seq.values()))}")
    return score_trackers(results_dir, trackers, dataset, sequences, found, protocol), applied
