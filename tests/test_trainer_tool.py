"""tools/train.py end to end: a tiny real MixFormerV2 on synthetic LaSOT/GOT-10k data through the real pipeline,
one-line errors (exit status 2) for bad input, exit status 3 from the NaN guard; tools/profile_train.py's JSON."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import yaml

import trainer_toy  # noqa: F401 - registers the tests' stages
from mixformerv2.config import ModelConfig, load_config
from mixformerv2.data.synthetic import generate_all
from mixformerv2.data.synthetic.scene import PRESETS
from mixformerv2.models import build_model, load_checkpoint
from mixformerv2.train.stage import list_stages
from mixformerv2.train.trainer import NonFiniteError
from test_tools_cli import assert_one_error_line
from tool_loader import load_tool

TINY = ModelConfig(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, template_size=32, search_size=64,
                   num_bins=16, drop_path_rate=0.1)



@pytest.fixture()
def train_tool():
    """tools/train.py, with the root logger's handlers put back after the call (it installs its own)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield load_tool("train")
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The tiny preset's videos made long enough to be drawn (>= 20 frames)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_all(root, replace(PRESETS["tiny"], lasot_frames=24, got10k_frames=24), formats=("lasot", "got10k"))
    return root


def write_config(path: Path, data_root: Path, **train) -> Path:
    path.write_text(yaml.safe_dump({
        "model": asdict(TINY),
        "data": {"train_datasets": ["lasot_train"], "train_ratios": [1.0], "val_datasets": ["got10k_val"],
                 "val_ratios": [1.0], "samples_per_epoch": 16, "val_samples_per_epoch": 8, "num_workers": 0,
                 "max_sample_interval": 20, "roots": {"lasot_train": str(data_root / "lasot"),
                                                      "got10k_val": str(data_root / "got10k")}},
        "train": {"stage": "tiny_box", "epochs": 2, "batch_size_per_process": 4, "lr": 1e-3, "print_interval": 2,
                  "val_interval": 1, "checkpoint_interval": 3, **train}}))
    return path


def test_tool_trains_a_real_model_and_writes_a_strictly_loadable_official_file(train_tool, data_root, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", data_root)
    out = tmp_path / "run"
    assert train_tool.main(["--config", str(config), "--output", str(out), "--device", "cpu", "--no-progress",
                            "--set", "train.seed=7"]) == 0
    cfg = load_config(out / "config.yaml", stages=list_stages())
    assert cfg.train.seed == 7 and cfg.model == TINY
    model = build_model(cfg.model)
    meta = load_checkpoint(model, out / "model_final.pth.tar")  # strict, as tools/test.py and the next stage
    assert meta["iteration"] == 8 and "stage: tiny_box" in meta["config"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["split"] == "val"] == [1, 2]
    assert all(0.0 <= r["iou"] <= 1.0 for r in rows if "iou" in r)
    assert "final model" in (out / "train.log").read_text()
    state = torch.load(out / "checkpoints" / "step_00000008.pt", weights_only=True)
    assert state["config"]["data"]["roots"]["lasot_train"] == str(data_root / "lasot")


@pytest.mark.parametrize("override, message", [
    ("train.stage=nope", "--set train.stage=nope: train.stage: 'nope' is not one of"),
    ("train.lr_typo=1", "train.lr_typo: unknown key"),
    ("train.batch_size=4", "train.batch_size: unknown key"),  # renamed: train.batch_size_per_process
    ("train.scheduler=linear", "train.scheduler: 'linear' is not one of step, cosine"),
    ("data.val_datasets=[lasot_nope]", "data.val_datasets[0]: unknown dataset 'lasot_nope'"),
    ("data.roots={lasot_train: /nonexistent/lasot}", "/nonexistent/lasot"),
])
def test_tool_bad_input_is_one_line_naming_the_key(train_tool, data_root, tmp_path, capsys, override, message):
    config = write_config(tmp_path / "tiny.yaml", data_root)
    code = train_tool.main(["--config", str(config), "--output", str(tmp_path / "run"), "--device", "cpu",
                            "--no-progress", "--set", override])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), "train.py: error: ", message)


def test_tool_a_missing_resume_file_is_one_line(train_tool, data_root, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", data_root)
    missing = tmp_path / "nowhere" / "step_00000003.pt"
    code = train_tool.main(["--config", str(config), "--output", str(tmp_path / "run"), "--device", "cpu",
                            "--no-progress", "--resume", str(missing)])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), f"{missing}: checkpoint file not found")


def test_tool_a_dataset_without_a_usable_sequence_is_one_line(train_tool, tmp_path, capsys):
    short = tmp_path / "short"
    generate_all(short, "tiny", formats=("lasot",))  # 16-frame videos: shorter than the sampler's minimum
    config = write_config(tmp_path / "tiny.yaml", short)
    code = train_tool.main(["--config", str(config), "--output", str(tmp_path / "run"), "--device", "cpu",
                            "--no-progress", "--set", "data.val_datasets=[]", "data.val_ratios=[]"])
    assert code == 2
    assert_one_error_line(capsys.readouterr(), "train.py: error: dataset 'lasot_train': 1000 sequences drawn in a row")


def test_tool_the_nan_guard_stops_with_status_3(train_tool, data_root, tmp_path, capsys, monkeypatch):
    def stopped(*args, **kwargs):
        raise NonFiniteError("iteration 6 (epoch 0): 3 consecutive iterations with a non-finite loss\nsecond line")

    monkeypatch.setattr(train_tool, "run_training", stopped)
    config = write_config(tmp_path / "tiny.yaml", data_root)
    code = train_tool.main(["--config", str(config), "--output", str(tmp_path / "run"), "--device", "cpu"])
    assert code == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith("iteration 6 (epoch 0): 3 consecutive iterations with a "
                                                   "non-finite loss second line")
    assert "non-finite loss second line" in (tmp_path / "run" / "train.log").read_text()  # the run's log says why


def test_profile_train_reports_throughput_and_phase_times(data_root, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", data_root)
    out = tmp_path / "profile.json"
    assert load_tool("profile_train").main(["--config", str(config), "--device", "cpu", "--steps", "2",
                                            "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    phases = [result[f"{name}_ms"] for name in ("data_wait", "forward", "backward", "optimizer")]
    assert all(ms > 0 for ms in phases) and result["step_ms"] == pytest.approx(sum(phases))
    assert 0 < result["data_wait_fraction"] < 1 and result["samples_per_s"] > 0
    assert result["peak_memory_mib"] > 0 and (result["steps"], result["batch_size_per_process"]) == (2, 4)
    assert set(result["cpu"]) == {"model", "avx2", "avx512f", "avx512_bf16", "amx"}
    assert result["threads"]["intra_op"] >= 1 and result["threads"]["logical_cpus"] >= 1
    assert not (tmp_path / "runs").exists()
