"""Our tracker inside the official VOT toolkit, end to end and offline: tools/vot.py converts two synthetic sequences
into a local stack, the toolkit (its own environment, ``make vot-env``) runs the TraX server with a tiny random model,
and the numbers of its analysis JSON are checked against our own evaluator on the same trajectories.

Needs ``.venv-vot/`` (``make test`` creates it first) and ``vot-trax`` in this interpreter (the ``vot`` extra, which
``make extras`` installs); without either the tests are skipped with the command that provides it.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_fixtures import write_tiny_model_files
from mixformerv2.config import load_config
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.sequence import read_frame_rgb
from mixformerv2.data.synthetic import generate_all
from mixformerv2.evaluation.vot import iou_vot, unsupervised_accuracy
from mixformerv2.tracking.runner import track_sequence
from mixformerv2.tracking.tracker import build_tracker
from mixformerv2.vot import toolkit
from mixformerv2.vot import workspace as vot_workspace

REPO = Path(__file__).resolve().parents[1]
TOOLKIT_ENV = REPO / toolkit.DEFAULT_ENV

if not (TOOLKIT_ENV / "bin" / "vot").is_file():
    pytest.skip(f"the VOT toolkit environment {TOOLKIT_ENV} does not exist: run `make vot-env` (make test does)",
                allow_module_level=True)
if importlib.util.find_spec("trax") is None:
    pytest.skip(f"vot-trax is not installed in {sys.executable}: pip install -e '.[vot]' (make extras does)",
                allow_module_level=True)


@functools.cache
def vot_tool():
    """``tools/vot.py`` imported as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cli_tool_vot", REPO / "tools" / "vot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vot")
    made = write_tiny_model_files(root)
    generate_all(root / "synthetic", "tiny", seed=0, formats=("lasot",))
    return {**made, "lasot": root / "synthetic" / "lasot", "root": root}


def prepare(files, workspace: Path, *extra: str, checkpoint: str = "good", limit: int = 2) -> int:
    return vot_tool().main(["prepare", "--workspace", str(workspace), "--dataset", "lasot", "--root",
                            str(files["lasot"]), "--limit", str(limit), "--config", str(files["config"]),
                            "--checkpoint", str(files[checkpoint]), "--device", "cpu", "--threads", "1",
                            "--tracker", "tiny", *extra])


def evaluate(workspace: Path, *extra: str, tracker: str = "tiny") -> int:
    return vot_tool().main(["evaluate", "--workspace", str(workspace), "--tracker", tracker, "--toolkit-env",
                            str(TOOLKIT_ENV), *extra])


@pytest.fixture(scope="module")
def evaluated(files):
    """The two experiments of the local stack run by the toolkit; the summary JSON our tool wrote."""
    workspace = files["root"] / "workspace"
    assert prepare(files, workspace) == 0
    summary_path = files["root"] / "summary.json"
    assert evaluate(workspace, "--json", str(summary_path)) == 0
    return workspace, json.loads(summary_path.read_text())


def test_toolkit_accuracy_equals_our_evaluator_on_the_same_trajectory(files, evaluated):
    workspace, summary = evaluated
    analysis = json.loads(Path(summary["analysis"]).read_text())
    assert analysis["toolkit"] == "0.7.4"
    reported = analysis["results"]["unsupervised"]["results"][0][0][0]  # the JSON itself, not our summary
    assert summary["results"]["unsupervised"]["accuracy"] == reported
    reader = get_dataset("lasot", root=files["lasot"])
    sequences = [reader[name] for name in reader.sequence_names[:2]]
    predictions, sizes = [], []
    for sequence in sequences:
        folder = workspace / "results" / "tiny" / "unsupervised" / sequence.name
        boxes, codes = toolkit.read_trajectory(folder / f"{sequence.name}_001.txt")
        assert codes[0] == 1 and (codes[1:] == -1).all()  # initialisation, then a box every frame
        predictions.append(boxes)
        sizes.append(read_frame_rgb(sequence.frame_paths[0]).shape[1::-1])
    # the ground truth as our reader gives it, the trajectory as the toolkit stored it
    expected = unsupervised_accuracy(predictions, [s.gt_xywh for s in sequences], sizes)
    assert abs(reported - expected) <= 1e-6
    assert any((iou_vot(p[1:], s.gt_xywh[1:], size) > 0).any() for p, s, size in zip(predictions, sequences, sizes))


def test_the_trax_server_tracks_as_our_runner_does(files, evaluated):
    """Boxes (TraX sends 4 decimals) and confidences (6 decimals) equal those of tools/test.py's runner."""
    workspace, _ = evaluated
    tracker = build_tracker(load_config(files["config"]), files["good"], "cpu")
    reader = get_dataset("lasot", root=files["lasot"])
    for name in reader.sequence_names[:2]:
        ours = track_sequence(tracker, reader[name])
        folder = workspace / "results" / "tiny" / "unsupervised" / name
        boxes, _ = toolkit.read_trajectory(folder / f"{name}_001.txt")
        np.testing.assert_allclose(boxes[1:], ours.boxes_xywh[1:], rtol=0, atol=1e-4)
        lines = (folder / f"{name}_001_confidence.value").read_text().splitlines()
        assert lines[0] == "" and len(lines) == len(ours.scores)  # none for the initialisation frame
        np.testing.assert_allclose([float(v) for v in lines[1:]], ours.scores[1:], rtol=0, atol=1e-6)


def test_supervised_experiment_reports_eao(evaluated):
    workspace, summary = evaluated
    baseline = summary["results"]["baseline"]
    assert set(baseline) == {"accuracy", "robustness", "failures", "eao"}
    assert 0.0 <= baseline["eao"] <= 1.0 and 0.0 <= baseline["accuracy"] <= 1.0 and baseline["failures"] >= 0
    assert (workspace / "reports").is_dir()


def test_overlap_equals_the_toolkits_on_random_boxes(tmp_path):
    """iou_vot against vot.region.raster.calculate_overlap: halves, sub-pixel sizes, boxes leaving the image."""
    rng = np.random.default_rng(0)
    pred = np.round(rng.uniform([-20, -20, 0.2, 0.2], [70, 50, 40, 40], size=(300, 4)) * 2) / 2
    gt = np.round(rng.uniform([-10, -10, 1, 1], [60, 45, 30, 30], size=(300, 4)) * 4) / 4
    gt[:40] = pred[:40] + rng.integers(-2, 3, size=(40, 4))  # near misses
    np.save(tmp_path / "boxes.npy", np.stack([pred, gt]))
    code = ("import json, sys, numpy as np\nfrom vot.region.raster import calculate_overlap\n"
            "from vot.region.shapes import Rectangle\n"
            "pred, gt = np.load(sys.argv[1])\n"
            "print(json.dumps([calculate_overlap(Rectangle(*p), Rectangle(*g), (64, 48)) for p, g in zip(pred, gt)]))\n")
    done = subprocess.run([str(TOOLKIT_ENV / "bin" / "python"), "-c", code, str(tmp_path / "boxes.npy")],
                          capture_output=True, text=True, check=True, timeout=300)
    theirs = np.array(json.loads(done.stdout))
    np.testing.assert_array_equal(iou_vot(pred, gt, (64, 48)), theirs)


def test_a_tracker_that_crashes_inside_vot_is_a_failure_with_its_own_error(files, capsys):
    workspace = files["root"] / "crash"
    assert prepare(files, workspace, checkpoint="deeper", limit=1) == 0
    capsys.readouterr()
    assert evaluate(workspace, "--experiments", "unsupervised", "--no-report") == 2
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert line.startswith("vot.py: error: tracker tiny failed on sequence ")
    assert "mixformerv2.vot: error: " in line and "deeper.pth.tar" in line  # the tracker's own one-line error
    assert "accuracy" not in out


def test_a_tracker_that_times_out_inside_vot_is_a_failure(files, capsys):
    """A TraX server that answers the handshake and then never replies (the toolkit's watchdog covers the replies,
    not the start-up)."""
    workspace = files["root"] / "timeout"
    assert prepare(files, workspace, limit=1) == 0
    stalled = {"protocol": "traxpython", "python": sys.executable, "timeout": "1",
               "paths": os.pathsep.join(vot_workspace.import_roots(("trax",))),
               "command": "import time, trax; s = trax.Server(['rectangle'], ['path']); time.sleep(60)"}
    vot_workspace.write_tracker(workspace, "stalled", stalled)
    capsys.readouterr()
    assert evaluate(workspace, "--experiments", "unsupervised", "--no-report", tracker="stalled") == 2
    out, err = capsys.readouterr()
    line = err.strip().splitlines()[-1]
    assert "tracker stalled failed on sequence" in line and "did not reply in 1 seconds" in line
    assert "accuracy" not in out
