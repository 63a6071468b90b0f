"""Evaluation at scale: workers spread over GPUs (a fake device count), --shard K/N partition and merge into one
folder, the run's summary line, --random-init, released configs by name."""
from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytest
import torch

import dataset_fixtures as fx
from model_fixtures import write_tiny_model_files
from mixformerv2.config import ConfigError, load_config
from mixformerv2.evaluation.results import ResultFileError, box_rule_for_folder, unfinished_shards
from mixformerv2.tracking import runner
from mixformerv2.tracking.runner import RunMismatchError, RunSummary, run_sequences
from mixformerv2.tracking.shards import parse_shard, partition, shard_sequences
from mixformerv2.tracking.tracker import TrackOutput
from mixformerv2.utils.device import worker_devices
from mixformerv2.utils.errors import UserError
from test_runner_robust import _manifest, make_sequence  # tests/ is on sys.path
from tool_loader import load_tool

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- devices
def test_cuda_spreads_workers_round_robin_over_the_visible_gpus():
    cuda = [torch.device("cuda", k) for k in range(8)]
    assert worker_devices("cuda", 16, cuda_count=8) == cuda + cuda  # pytracking: worker k on GPU k mod G
    assert worker_devices("cuda", 3, cuda_count=2) == [cuda[0], cuda[1], cuda[0]]
    assert worker_devices("cuda", 1, cuda_count=8) == [cuda[0]]
    assert worker_devices("cuda:1", 3, cuda_count=8) == [cuda[1]] * 3  # one GPU named: every worker on it
    assert worker_devices("cpu", 2) == [torch.device("cpu")] * 2
    assert worker_devices("cpu", 0) == [torch.device("cpu")]  # in-process run: one tracker
    with pytest.raises(UserError, match="--device cuda: no CUDA device is visible"):
        worker_devices("cuda", 2, cuda_count=0)


def test_run_benchmark_builds_each_worker_on_its_device(monkeypatch, tmp_path):
    seen = {}

    def capture(factories, sequences, results_dir, manifest, workers, progress):
        seen.update(devices=[f.args[2] for f in factories], manifest=manifest, workers=workers)
        return RunSummary(Path(results_dir))

    monkeypatch.setattr(runner, "run_sequences", capture)
    cfg = load_config("mixformerv2_s")
    runner.run_benchmark(cfg, None, [], "lasot", results_root=tmp_path, device="cuda", workers=3, cuda_count=2)
    assert seen["devices"] == [torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cuda", 0)]
    assert seen["manifest"]["devices"] == ["cuda:0", "cuda:1", "cuda:0"] and seen["workers"] == 3


class TaggedTracker:
    """Writes its tag as the box width, so a result file says which factory's tracker made it."""

    def __init__(self, tag: float):
        self.tag = tag

    def initialize(self, image, box):
        self.box = [1.0, 1.0, self.tag, 4.0]

    def track(self, image):
        return TrackOutput(self.box, 0.9)


def test_each_worker_process_gets_its_own_factory(tmp_path):
    sequences = [make_sequence(tmp_path / "data", f"seq-{k}", frames=3) for k in range(6)]
    factories = [partial(TaggedTracker, 11.0), partial(TaggedTracker, 22.0)]
    summary = run_sequences(factories, sequences, tmp_path / "out", _manifest("a" * 64), workers=2, progress=False)
    assert summary.ok and len(summary.done) == 6
    widths = {float((tmp_path / "out" / f"{s.name}.txt").read_text().splitlines()[1].split(",")[2])
              for s in sequences}
    assert widths <= {11.0, 22.0}
    in_process = run_sequences(factories, sequences[:1], tmp_path / "one", _manifest("a" * 64), progress=False)
    assert in_process.ok and (tmp_path / "one" / "seq-0.txt").read_text().splitlines()[1].split(",")[2] == "11.0"


# ----------------------------------------------------------------------------------------------------- shards
def test_parse_shard():
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "2", "a/b", "2/0", ""):
        with pytest.raises(UserError, match="--shard .*expected K/N with 1 <= K <= N"):
            parse_shard(bad)


def test_partition_balances_frames_and_ignores_the_listing_order():
    frames = {"a": 100, "b": 90, "c": 50, "d": 40, "e": 10, "f": 10}
    # longest first, each to the part with the fewest frames so far: a->1, b->2, c->2 (90<100), d->1 (100<140),
    # e->1 (140 = 140: the lower part), f->2
    assert partition(frames, 2) == [["a", "d", "e"], ["b", "c", "f"]]  # 150 and 150 frames
    reordered = dict(reversed(list(frames.items())))
    assert partition(reordered, 2) == partition(frames, 2)
    three = partition(frames, 3)
    assert sorted(n for part in three for n in part) == sorted(frames)  # every sequence exactly once
    assert partition(frames, 8)[6:] == [[], []]  # more parts than sequences: some are empty


def test_shards_cover_the_benchmark_once(tmp_path):
    sequences = [make_sequence(tmp_path, f"s{k}", frames=2 + k % 3) for k in range(7)]
    parts = [shard_sequences(sequences, k, 3) for k in (1, 2, 3)]
    names = [s.name for part in parts for s in part]
    assert sorted(names) == sorted(s.name for s in sequences)
    assert [len(p) for p in parts] == [3, 2, 2]
    assert shard_sequences(list(reversed(sequences)), 2, 3)[::-1] == parts[1]  # same part, given order kept


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    made = write_tiny_model_files(root)
    return {"config": made["config"], "good": made["good"], "lasot": fx.make_lasot(root / "lasot")}


def _test_args(tiny, results, *extra):
    return ["--config", str(tiny["config"]), "--checkpoint", str(tiny["good"]), "--dataset", "lasot", "--root",
            str(tiny["lasot"]), "--results", str(results), "--device", "cpu", "--no-progress", *extra]


def test_two_shards_fill_one_folder_that_analyze_scores_when_both_are_done(tiny, tmp_path, capsys, caplog):
    test, analyze = load_tool("test"), load_tool("analyze")
    folder = tmp_path / "results" / "tiny" / "lasot"
    scoring = ["--dataset", "lasot", "--root", str(tiny["lasot"]), "--results", str(tmp_path / "results"),
               "--trackers", "tiny"]
    with caplog.at_level(logging.INFO):
        assert test.main(_test_args(tiny, tmp_path / "results", "--run", "tiny", "--shard", "1/2")) == 0
    summary = [r.getMessage() for r in caplog.records if "wall time" in r.getMessage()]
    assert len(summary) == 1 and "1 sequences (1 tracked, 0 already complete, 0 failed)" in summary[0]
    assert "4 frames tracked, mean" in summary[0] and "FPS" in summary[0]  # airplane-1: 4 frames, the longer
    shard1 = json.loads((folder / "run.shard-1-of-2.json").read_text())
    assert shard1["shard"] == {"index": 1, "count": 2, "sequences": ["airplane-1"]}
    assert unfinished_shards(folder) == []
    capsys.readouterr()
    assert analyze.main(scoring) == 1  # rubicCube-1 (shard 2) is missing
    assert "rubicCube-1" in capsys.readouterr().err
    assert test.main(_test_args(tiny, tmp_path / "results", "--run", "tiny", "--shard", "2/2")) == 0
    assert sorted(p.name for p in folder.glob("*.txt")) == ["airplane-1.txt", "airplane-1_time.txt",
                                                           "rubicCube-1.txt", "rubicCube-1_time.txt"]
    assert analyze.main([*scoring, "--json", str(tmp_path / "report.json")]) == 0
    assert "2 sequences" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert "auc" in report["units"]["percent (0-100)"] and 0 <= report["trackers"]["tiny"]["auc"] <= 100


def test_a_shard_with_other_settings_is_refused_and_so_is_scoring_a_mixed_merge(tiny, tmp_path, capsys):
    test = load_tool("test")
    results = tmp_path / "results"
    assert test.main(_test_args(tiny, results, "--run", "tiny", "--shard", "1/2")) == 0
    capsys.readouterr()
    other = ("--set", "test.search_factor=3.0")
    assert test.main(_test_args(tiny, results, "--run", "tiny", "--shard", "2/2", *other)) == 2
    err = capsys.readouterr().err
    assert "test.py: error:" in err and "settings.search_factor" in err
    # the same shard run elsewhere with other settings and copied into the folder: scoring refuses the mix
    assert test.main(_test_args(tiny, tmp_path / "elsewhere", "--run", "tiny", "--shard", "2/2", *other)) == 0
    elsewhere = tmp_path / "elsewhere" / "tiny" / "lasot"
    folder = results / "tiny" / "lasot"
    for path in elsewhere.iterdir():
        if path.name != "run.json":
            (folder / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ResultFileError, match=r"run.shard-2-of-2.json: this shard ran with other settings .*"
                                              r"settings.search_factor"):
        box_rule_for_folder(folder)


# ------------------------------------------------------------------------------------------------ random init
def test_random_init_is_explicit_recorded_and_the_same_in_every_process(tiny, tmp_path, caplog):
    test = load_tool("test")
    args = ["--config", str(tiny["config"]), "--random-init", "--dataset", "lasot", "--root", str(tiny["lasot"]),
            "--device", "cpu", "--no-progress", "--run", "r"]
    with caplog.at_level(logging.WARNING):
        assert test.main([*args, "--results", str(tmp_path / "a")]) == 0
    assert any("--random-init" in r.getMessage() for r in caplog.records)
    manifest = json.loads((tmp_path / "a" / "r" / "lasot" / "run.json").read_text())
    assert manifest["weights"] == "random-init (seed 0)" and manifest["checkpoint"] is None
    assert test.main([*args, "--results", str(tmp_path / "b"), "--workers", "2"]) == 0
    for name in ("airplane-1.txt", "rubicCube-1.txt"):  # seeded: a worker process builds the same weights
        assert (tmp_path / "a" / "r" / "lasot" / name).read_text() == (tmp_path / "b" / "r" / "lasot" / name).read_text()


def test_checkpoint_or_random_init_is_required(tiny, capsys):
    with pytest.raises(SystemExit):
        load_tool("test").main(["--config", str(tiny["config"]), "--dataset", "lasot"])
    assert "one of the arguments --checkpoint --random-init is required" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- configs by name
def test_released_configs_by_name():
    assert load_config("mixformerv2_s") == load_config(REPO / "configs" / "mixformerv2_s.yaml")
    assert load_config("mixformerv2_b").model.depth == 8
    with pytest.raises(ConfigError, match="mixformerv2_xl: no such config file, nor a released config name "
                                          r"\(known: mixformerv2_b, mixformerv2_s, mixvit_b_teacher\)"):
        load_config("mixformerv2_xl")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("configs/missing.yaml")
