"""Benchmark runner and tools/test.py: result files, run.json, resume, refusal, failures, parallel workers."""
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mixformerv2.config import ModelConfig, load_config
from mixformerv2.data.registry import get_dataset
from mixformerv2.data.synthetic import generate_all
from mixformerv2.evaluation.protocols import eval_sequence, evaluate_tracker, get_rules
from mixformerv2.evaluation.report import paper_rows
from mixformerv2.evaluation.results import read_result_file
from mixformerv2.models import build_model, save_checkpoint
from mixformerv2.tracking.runner import (RunMismatchError, format_boxes, make_manifest, run_sequences,
                                         track_sequence)
from mixformerv2.tracking.tracker import TrackOutput
from mixformerv2.utils.io import sha256_file
from tool_loader import load_tool

TINY = ModelConfig(embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, template_size=32, search_size=64,
                   num_bins=16, score_head=True, drop_path_rate=0.0)



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic LaSOT-format videos (3 x 16 frames), a tiny-model config and two different checkpoints."""
    root = tmp_path_factory.mktemp("runner")
    generate_all(root / "synthetic", "tiny", seed=0, formats=("lasot",))
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({"model": asdict(TINY), "test": {
        "datasets": {"lasot": {"search_factor": 4.0, "update_interval": 4}}}}))
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = root / f"tiny_{seed}.pth.tar"
        save_checkpoint(build_model(TINY), path)
        checkpoints.append(path)
    return {"root": root, "data": root / "synthetic" / "lasot", "config": config, "ckpt": checkpoints}


def _tool_args(setup, results, *extra, ckpt=0):
    return ["--config", str(setup["config"]), "--checkpoint", str(setup["ckpt"][ckpt]), "--dataset", "lasot",
            "--root", str(setup["data"]), "--results", str(results), "--run", "r", "--device", "cpu",
            "--no-progress", *extra]


def test_format_boxes_keeps_full_precision():
    boxes = np.array([[1.234, -1.7, 12.996, 3.9999999], [0.1 + 0.2, 2.0, 1e-7, 40.0]])
    text = format_boxes(boxes)
    assert text.splitlines()[0] == "1.234,-1.7,12.996,3.9999999"  # never rounded (12.996 must not become 13)
    np.testing.assert_array_equal(np.loadtxt(text.splitlines(), delimiter=","), boxes)  # exact round trip


def test_tool_writes_results_and_run_json(setup, tmp_path):
    test_tool = load_tool("test")
    assert test_tool.main(_tool_args(setup, tmp_path)) == 0
    out = tmp_path / "r" / "lasot"
    ds = get_dataset("lasot", root=setup["data"])
    for seq in ds:
        rows = [line.split(",") for line in (out / f"{seq.name}.txt").read_text().splitlines()]
        assert len(rows) == len(seq) and all(len(r) == 4 and all("." in v for v in r) for r in rows)
        np.testing.assert_allclose([float(v) for v in rows[0]], seq.init_box_xywh)  # frame 0 = init box
        times = (out / f"{seq.name}_time.txt").read_text().split()
        assert len(times) == len(seq) and all(float(t) > 0 for t in times)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["checkpoint_sha256"] == sha256_file(setup["ckpt"][0])
    assert manifest["settings"]["search_factor"] == 4.0 and manifest["settings"]["update_interval"] == 4
    assert manifest["settings"]["online_size"] == 1 and manifest["settings"]["dataset"] == "lasot"
    assert manifest["tracker"] == {"forward_path": "cached", "backend": "torch", "precision": "fp32"}
    assert manifest["box_rule"] == "truncate_int"
    assert manifest["code_version"]["package"] == "0.1.0"
    assert manifest["config"]["model"]["embed_dim"] == 64
    assert not list(out.glob(".*"))  # no temporary files left


def test_resume_skips_finished_and_refuses_other_checkpoint_or_settings(setup, tmp_path, capsys):
    test_tool = load_tool("test")
    out = tmp_path / "r" / "lasot"
    assert test_tool.main(_tool_args(setup, tmp_path, "--sequences", "blob-2")) == 0  # a run stopped early
    first = (out / "blob-2.txt").stat().st_mtime_ns
    assert not (out / "ellipse-2.txt").exists()
    assert test_tool.main(_tool_args(setup, tmp_path, "--no-cache")) == 2  # other forward path: refused
    assert not (out / "ellipse-2.txt").exists()
    assert test_tool.main(_tool_args(setup, tmp_path)) == 0  # the re-run finishes the others
    assert (out / "blob-2.txt").stat().st_mtime_ns == first
    assert (out / "ellipse-2.txt").is_file() and (out / "polygon-2.txt").is_file()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    assert test_tool.main(_tool_args(setup, tmp_path, ckpt=1)) == 2  # other checkpoint: refused
    assert test_tool.main(_tool_args(setup, tmp_path, "--set", "test.datasets.lasot.update_interval=9")) == 2
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before  # nothing touched


def test_refusal_names_the_difference(setup, tmp_path):
    cfg = load_config(setup["config"])
    ds = get_dataset("lasot", root=setup["data"])
    out = tmp_path / "lasot"
    manifest = make_manifest(cfg, setup["ckpt"][0], "lasot")
    run_sequences(lambda: ScriptedTracker(), [ds[0]], out, manifest, progress=False)
    other = make_manifest(cfg, setup["ckpt"][1], "lasot")
    with pytest.raises(RunMismatchError, match="checkpoint_sha256"):
        run_sequences(lambda: ScriptedTracker(), [ds[0]], out, other, progress=False)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x.txt").write_text("1,2,3,4\n")
    with pytest.raises(RunMismatchError, match="no run.json"):
        run_sequences(lambda: ScriptedTracker(), [ds[0]], stray, manifest, progress=False)


class ScriptedTracker:
    """Echoes the initial box; raises on frame ``crash_frame`` of the ``crash_sequence``-th sequence (1-based)."""

    def __init__(self, crash_sequence=None, crash_frame=3):
        self.sequences = 0
        self.tracked = 0
        self.crash_sequence, self.crash_frame = crash_sequence, crash_frame

    def initialize(self, image, box):
        self.sequences += 1
        self.frame = 0
        self.box = [float(v) for v in box]

    def track(self, image):
        self.frame += 1
        self.tracked += 1
        if self.sequences == self.crash_sequence and self.frame == self.crash_frame:
            raise RuntimeError("simulated crash")
        return TrackOutput(self.box, 0.9)


def test_crash_midway_leaves_no_partial_files_and_rerun_redoes_only_it(setup, tmp_path):
    cfg = load_config(setup["config"])
    sequences = list(get_dataset("lasot", root=setup["data"]))
    manifest = make_manifest(cfg, setup["ckpt"][0], "lasot")
    crashing = ScriptedTracker(crash_sequence=2)
    summary = run_sequences(lambda: crashing, sequences, tmp_path, manifest, progress=False)
    broken = sequences[1].name
    assert list(summary.failed) == [broken] and "simulated crash" in summary.failed[broken]
    assert summary.done == [sequences[0].name, sequences[2].name]
    assert not (tmp_path / f"{broken}.txt").exists() and not (tmp_path / f"{broken}_time.txt").exists()
    mtimes = {s.name: (tmp_path / f"{s.name}.txt").stat().st_mtime_ns for s in sequences if s.name != broken}
    counting = ScriptedTracker()
    summary = run_sequences(lambda: counting, sequences, tmp_path, manifest, progress=False)
    assert summary.done == [broken] and sorted(summary.skipped) == sorted(mtimes) and summary.ok
    assert counting.sequences == 1 and counting.tracked == len(sequences[1]) - 1
    assert {n: (tmp_path / f"{n}.txt").stat().st_mtime_ns for n in mtimes} == mtimes
    # a truncated result file (not ours, but possible after a disk problem) is redone
    (tmp_path / f"{broken}.txt").write_text("1,2,3,4\n")
    summary = run_sequences(lambda: ScriptedTracker(), sequences, tmp_path, manifest, progress=False)
    assert summary.done == [broken]


def test_missing_frame_fails_that_sequence_only(setup, tmp_path):
    data = tmp_path / "lasot"
    shutil.copytree(setup["data"], data)
    seq = get_dataset("lasot", root=data)["polygon-2"]
    missing = Path(seq.frame_paths[5])
    missing.unlink()
    with pytest.raises(OSError, match=rf"polygon-2.*{missing.name}"):
        track_sequence(ScriptedTracker(), seq)
    test_tool = load_tool("test")
    args = _tool_args(setup, tmp_path / "results")
    args[args.index("--root") + 1] = str(data)
    assert test_tool.main(args) == 1
    out = tmp_path / "results" / "r" / "lasot"
    assert (out / "blob-2.txt").is_file() and (out / "ellipse-2.txt").is_file()
    assert not (out / "polygon-2.txt").exists()


def test_parallel_workers_match_in_process(setup, tmp_path):
    test_tool = load_tool("test")
    assert test_tool.main(_tool_args(setup, tmp_path / "one", "--workers", "1")) == 0
    assert test_tool.main(_tool_args(setup, tmp_path / "two", "--workers", "2")) == 0
    one, two = tmp_path / "one" / "r" / "lasot", tmp_path / "two" / "r" / "lasot"
    for path in sorted(one.glob("*-2.txt")):
        assert (two / path.name).read_text() == path.read_text()


def test_demo_writes_video_and_csv(setup, tmp_path):
    import cv2

    demo = load_tool("demo")
    seq = get_dataset("lasot", root=setup["data"])["blob-2"]
    box = ",".join(str(v) for v in seq.init_box_xywh)
    out = tmp_path / "demo.mp4"
    assert demo.main(["--frames", str(Path(seq.frame_paths[0]).parent), "--init-box", box, "--config",
                      str(setup["config"]), "--checkpoint", str(setup["ckpt"][0]), "--out", str(out),
                      "--device", "cpu"]) == 0
    rows = (tmp_path / "demo.csv").read_text().splitlines()
    assert rows[0] == "frame,x,y,w,h,score" and len(rows) == len(seq) + 1
    assert rows[1].endswith(",") and 0.0 <= float(rows[2].split(",")[-1]) <= 1.0
    np.testing.assert_allclose([float(v) for v in rows[1].split(",")[1:5]], seq.init_box_xywh)  # frame 0: init box
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == len(seq)
    # a video file works as input too (decoded BGR, converted to RGB before tracking)
    again = tmp_path / "again.mp4"
    assert demo.main(["--video", str(out), "--init-box", box, "--config", str(setup["config"]),
                      "--checkpoint", str(setup["ckpt"][0]), "--out", str(again), "--device", "cpu"]) == 0
    assert len((tmp_path / "again.csv").read_text().splitlines()) == len(seq) + 1


def test_reproduce_scores_the_files_it_wrote_and_sets_the_paper_beside_them(setup, tmp_path):
    reproduce = load_tool("reproduce")
    code = reproduce.main(["--config", str(setup["config"]), "--checkpoint", str(setup["ckpt"][0]),
                           "--datasets", "lasot", "--root-lasot", str(setup["data"]), "--results", str(tmp_path),
                           "--run", "r", "--device", "cpu", "--paper-tracker", "MixFormerV2-B"])
    assert code == 0
    report = json.loads((tmp_path / "r" / "reproduce.json").read_text())
    assert report["paper_tracker"] == "MixFormerV2-B" and report["datasets"]["lasot"]["status"] == "scored"
    scores = report["datasets"]["lasot"]["scores"]
    # the pytracking protocol over its own result files, truncated toward zero as the official runner saves them
    sequences = list(get_dataset("lasot", root=setup["data"]))
    runs = [[np.trunc(read_result_file(tmp_path / "r" / "lasot" / f"{s.name}.txt"))] for s in sequences]
    expected = evaluate_tracker(get_rules("lasot"), [eval_sequence(s, "lasot") for s in sequences], runs,
                                "pytracking")
    assert set(scores) == {"auc", "norm_precision", "precision"}
    assert scores == pytest.approx({k: expected[k] for k in scores}, abs=1e-9)
    table = reproduce.comparison_table(report["datasets"], "MixFormerV2-B").splitlines()
    ours, paper, diff = next(map(float, line.split()[2:]) for line in table if line.split()[:2] == ["lasot", "auc"])
    published = paper_rows("lasot")["MixFormerV2-B"]["auc"]
    assert ours == pytest.approx(scores["auc"], abs=0.05) and paper == pytest.approx(published, abs=0.05)
    assert diff == pytest.approx(scores["auc"] - published, abs=0.05)
    assert report["datasets"]["lasot"]["box_rule"]["box_rule"] == "truncate_int"  # as the paper's numbers were
