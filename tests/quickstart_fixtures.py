"""A two-sequence LaSOT-format benchmark and hand-made result folders whose scores are worked out by hand, shared by
the baseline and quickstart-report tests.

Ground truth (all frames visible): ``cube-1`` moves 5 px right and back, ``cube-2`` stands still.
Per frame, pytracking counts the 21 thresholds 0, 0.05, ..., 1 that the IoU exceeds (IoU 1 -> 20; frame 0 is set to
the ground truth, so always 20):

* hold-the-first-box: cube-1 frame 1 IoU 50/150 = 1/3 -> 7; cube-2 perfect.
  AUC = mean over sequences of (counts / 21 / frames) = ((20 + 7 + 20) / 63 + 60 / 63) / 2 = 107 / 126.
  Centre errors 5 px (P at 20 px: all frames) and 0.5 of the box (P_norm at 0.2: cube-1 frame 1 fails): 5/6.
* exact ("teacher"): 20 / 21 everywhere; P and P_norm 100.
* "student": cube-1 frame 1 is 3 px left of the truth: IoU 70/130 = 0.538 -> 11 thresholds;
  AUC = ((20 + 11 + 20) / 63 + 60 / 63) / 2 = 111 / 126; normalised error 0.3 fails: P_norm 5/6; P 100.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dataset_fixtures import box_lines, write_text

GT = {"cube-1": np.array([[1, 1, 10, 10], [6, 1, 10, 10], [1, 1, 10, 10]], dtype=np.float64),
      "cube-2": np.array([[20, 20, 10, 10], [20, 20, 10, 10]], dtype=np.float64)}
STUDENT = {"cube-1": np.array([[1, 1, 10, 10], [3, 1, 10, 10], [1, 1, 10, 10]], dtype=np.float64),
           "cube-2": GT["cube-2"]}

HOLD_AUC = 100 * 107 / 126
EXACT_AUC = 100 * 20 / 21
STUDENT_AUC = 100 * 111 / 126
HOLD_NORM_PRECISION = STUDENT_NORM_PRECISION = 100 * 5 / 6


def make_cube_lasot(root: Path) -> Path:
    """The benchmark above in LaSOT's test layout (no images: the readers and the baselines never open them)."""
    for name, gt in GT.items():
        folder = root / "cube" / name
        flags = ",".join("0" for _ in gt) + "\n"
        write_text(folder / "groundtruth.txt", box_lines(gt))
        write_text(folder / "full_occlusion.txt", flags)
        write_text(folder / "out_of_view.txt", flags)
    write_text(root / "testing_set.txt", "".join(f"{name}\n" for name in GT))
    return root


def write_run(results_root: Path, run: str, boxes: dict[str, np.ndarray], dataset: str = "lasot") -> Path:
    """Hand-made results of ``run`` in the runner's layout, with a minimal ``run.json`` (box rule truncate_int:
    the boxes are integers, so truncation changes nothing)."""
    folder = results_root / run / dataset
    for name, rows in boxes.items():
        write_text(folder / f"{name}.txt", box_lines(rows))
    write_text(folder / "run.json", json.dumps({"box_rule": "truncate_int", "dataset": dataset}))
    return folder
