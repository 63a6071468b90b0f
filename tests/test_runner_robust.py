"""The runner never hangs and never locks: set-up errors end a parallel run at once, a folder without results
accepts a corrected run, workers die with their parent, run.json says what ran, unhonourable options are refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dataset_fixtures import _write_lasot_sequence, write_image
from model_fixtures import TINY, write_tiny_model_files
from mixformerv2.config import Config, ModelConfig
from mixformerv2.config import TestConfig as TrackerSettings
from mixformerv2.data.sequence import Sequence
from mixformerv2.models import build_model
from mixformerv2.tracking.runner import (RunMismatchError, TrackerSetupError, make_manifest, run_benchmark,
                                         run_sequences)
from mixformerv2.tracking.tracker import MixFormerV2Tracker, TrackOutput

REPO = Path(__file__).resolve().parents[1]
TEACHER = ModelConfig(name="mixvit", head_type="corner", head_channels=16, embed_dim=32, depth=2, num_heads=2,
                      mlp_ratio=2.0, template_size=32, search_size=64, drop_path_rate=0.0)


def make_sequence(root: Path, name: str, frames: int = 4) -> Sequence:
    """A LaSOT-like sequence of 8x8 frames with the target at [1, 1, 4, 4]."""
    paths = [root / name / f"{i:08d}.jpg" for i in range(1, frames + 1)]
    for path in paths:
        write_image(path)
    return Sequence(name=name, dataset="lasot", frame_paths=paths, gt_xywh=np.tile([1.0, 1.0, 4.0, 4.0], (frames, 1)),
                    visible=np.ones(frames, dtype=bool))


class EchoTracker:
    """Keeps the initial box; reports the forward path it was built with."""

    def __init__(self, forward_path: str = "cached"):
        self.forward_path = forward_path

    def initialize(self, image, box):
        self.box = [float(v) for v in box]

    def track(self, image):
        return TrackOutput(self.box, 0.9)


def _manifest(sha: str) -> dict:
    return make_manifest(Config(), None, "lasot", checkpoint_sha256=sha)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A config for the tiny student, a checkpoint of it and one of a model with another layout (depth 3)."""
    root = tmp_path_factory.mktemp("robust")
    made = write_tiny_model_files(root)
    sequences = [make_sequence(root / "data", f"seq-{k}") for k in range(2)]
    return {"root": root, "config": made["config"], "good": made["good"], "wrong": made["deeper"],
            "sequences": sequences}


# ------------------------------------------------------------------------------------ set-up errors, no hangs
def test_wrong_checkpoint_with_two_workers_ends_at_once_with_one_line(tiny, tmp_path):
    """tools/test.py --workers 2 with a checkpoint of another layout: exit 2 with one error line naming the file (a
    multiprocessing.Pool respawned the failing workers forever: the timeout guards against that)."""
    lasot = tmp_path / "lasot"
    for name in ("cat-1", "cat-2"):
        _write_lasot_sequence(lasot / "cat" / name, 3, "1,1,4,4\n" * 3, "0,0,0", "0,0,0")
    (lasot / "testing_set.txt").write_text("cat-1\ncat-2\n")
    results = tmp_path / "results"
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "tools" / "test.py"), "--config", str(tiny["config"]),
                           "--checkpoint", str(tiny["wrong"]), "--dataset", "lasot", "--root", str(lasot),
                           "--results", str(results), "--run", "r", "--device", "cpu", "--workers", "2",
                           "--no-progress"], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "does not fit" in line]
    assert len(errors) == 1 and str(tiny["wrong"]) in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (results / "r" / "lasot" / "run.json").exists()  # nothing ran, nothing locks the folder
    assert time.monotonic() - start < 200


def test_wrong_checkpoint_in_process_is_one_line(tiny, tmp_path):
    from mixformerv2.config import load_config

    with pytest.raises(TrackerSetupError, match=r"CheckpointError: .*deeper\.pth\.tar: does not fit") as err:
        run_benchmark(load_config(tiny["config"]), tiny["wrong"], tiny["sequences"], "lasot", results_root=tmp_path,
                      device="cpu", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "default" / "lasot").exists()


# ------------------------------------------------------------------------------------------------ no locking
def test_folder_without_results_accepts_a_corrected_run(tiny, tmp_path):
    out = tmp_path / "lasot"

    def broken():
        raise ValueError("no such device")

    with pytest.raises(TrackerSetupError, match="no such device"):
        run_sequences(broken, tiny["sequences"], out, _manifest("a" * 64), progress=False)
    assert not (out / "run.json").exists()

    # a run.json beside no result (every sequence failed, or an older version wrote it first) locks nothing
    out.mkdir()
    (out / "run.json").write_text(json.dumps({**_manifest("a" * 64), "tracker": {"forward_path": "cached"}}))
    summary = run_sequences(EchoTracker, tiny["sequences"], out, _manifest("b" * 64), progress=False)
    assert summary.ok and len(summary.done) == 2
    assert json.loads((out / "run.json").read_text())["checkpoint_sha256"] == "b" * 64

    # results that exist do lock it
    (out / "seq-0.txt").unlink()
    with pytest.raises(RunMismatchError, match="checkpoint_sha256"):
        run_sequences(EchoTracker, tiny["sequences"], out, _manifest("a" * 64), progress=False)


# -------------------------------------------------------------------------------------------- what really ran
def test_run_json_records_the_forward_path_the_tracker_reports(tiny, tmp_path):
    summary = run_sequences(lambda: EchoTracker("full"), tiny["sequences"][:1], tmp_path, _manifest("a" * 64),
                            progress=False)
    assert summary.ok
    assert json.loads((tmp_path / "run.json").read_text())["tracker"] == {"forward_path": "full",
                                                                           "backend": "unknown",
                                                                           "precision": "unknown"}
    with pytest.raises(RunMismatchError, match="tracker.forward_path: 'full' .* vs 'cached'"):
        run_sequences(EchoTracker, tiny["sequences"], tmp_path, _manifest("a" * 64), progress=False)


def test_tracker_refuses_a_cached_path_the_model_lacks():
    teacher = build_model(TEACHER)  # the MixViT teacher has no encode_templates
    with pytest.raises(ValueError, match="cached template path .* MixViT has none"):
        MixFormerV2Tracker(teacher, TrackerSettings(), 32, 64, cached=True)
    assert MixFormerV2Tracker(teacher, TrackerSettings(), 32, 64).forward_path == "full"
    assert MixFormerV2Tracker(teacher, TrackerSettings(), 32, 64, cached=False).forward_path == "full"
    student = build_model(TINY)
    assert MixFormerV2Tracker(student, TrackerSettings(), 32, 64).forward_path == "cached"
    assert MixFormerV2Tracker(student, TrackerSettings(), 32, 64, cached=False).forward_path == "full"


def test_run_benchmark_records_the_full_forward_of_a_teacher(tmp_path):
    cfg = Config(model=TEACHER)
    seq = make_sequence(tmp_path / "data", "seq-0")
    summary = run_benchmark(cfg, None, [seq], "lasot", results_root=tmp_path, device="cpu", progress=False)
    assert summary.ok
    manifest = json.loads((tmp_path / "default" / "lasot" / "run.json").read_text())
    assert manifest["tracker"] == {"forward_path": "full", "backend": "torch", "precision": "fp32"}
    with pytest.raises(TrackerSetupError, match="MixViT has none"):
        run_benchmark(cfg, None, [seq], "lasot", results_root=tmp_path / "other", device="cpu", cached=True,
                      progress=False)


# ------------------------------------------------------------------------------------------ die with the parent
PARENT = '''
import os
import sys
import time
from functools import partial
from pathlib import Path

from mixformerv2.tracking.runner import run_sequences
from mixformerv2.tracking.tracker import TrackOutput
from test_runner_robust import _manifest, make_sequence  # tests/ is on PYTHONPATH


class SlowTracker:
    def __init__(self, pid_dir):
        (Path(pid_dir) / str(os.getpid())).write_text("")

    def initialize(self, image, box):
        self.box = [float(v) for v in box]

    def track(self, image):
        time.sleep(0.05)
        return TrackOutput(self.box, 0.9)


if __name__ == "__main__":
    data, out, pid_dir = map(Path, sys.argv[1:4])
    sequences = [make_sequence(data, f"seq-{k}", frames=10) for k in range(40)]
    run_sequences(partial(SlowTracker, pid_dir), sequences, out, _manifest("a" * 64), workers=2, progress=False)
'''


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see the orphans")
def test_workers_die_with_their_parent(tmp_path):
    """SIGKILL the parent of a 2-worker run: the workers are gone within 2 s and write nothing more (they went on
    writing for ~20 s: every task already in the pool's pipe)."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    out, pids = tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(out), str(pids)],
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    try:
        deadline = time.monotonic() + 180
        while not (len(list(pids.iterdir())) == 2 and any(out.glob("*-*.txt"))):
            assert parent.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    workers = [int(p.name) for p in pids.iterdir()]
    deadline = time.monotonic() + 2.0
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"worker processes {survivors} outlived their parent"
    before = _files(out)
    time.sleep(1.0)
    assert _files(out) == before
