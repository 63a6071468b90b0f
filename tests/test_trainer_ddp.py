"""torchrun --nproc_per_node 2 on CPU (gloo): ranks stay identical, only rank 0 writes, and the run equals a
1-process run with gradient accumulation 2 (the same 8 samples per iteration: rank r of the 2-process run draws
samples r, r + 2, ...; the 1-process run draws them in two consecutive batches of 4)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mixformerv2.train.run import run_training
from test_trainer_resume import TOY, toy_env
from trainer_toy import toy_config, toy_loaders

DDP = ["train.checkpoint_interval=5", "data.num_workers=0"]  # no dropout: the ranks' RNG streams differ


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "tensorboard" not in p.parts)


def train_rows(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["split"], r["step"], r["loss"], r.get("iou")) for r in rows]


def test_two_gloo_processes_match_one_process_with_accumulation(tmp_path):
    ddp = tmp_path / "ddp"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(TOY), "--output", str(ddp), "--dump-weights", str(tmp_path / "weights"),
                             "--set", *DDP], env=toy_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0 = torch.load(tmp_path / "weights.rank0", weights_only=True)
    rank1 = torch.load(tmp_path / "weights.rank1", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_training(toy_config(*DDP, "train.grad_accum_steps=2"), single, device="cpu", loaders=toy_loaders,
                     progress=False)
    finally:
        torch.set_num_threads(threads)
    expected = torch.load(single / "model_final.pth.tar", weights_only=True)["net"]
    for key in expected:
        assert torch.allclose(rank0[key], expected[key], atol=1e-5, rtol=0), key
    # only rank 0 wrote: the files of the single process (whose log went to pytest), one TensorBoard event file
    assert files_under(ddp) == sorted(files_under(single) + ["train.log"])
    assert "[rank 1]" not in (ddp / "train.log").read_text()
    assert len(list((ddp / "tensorboard").iterdir())) == 1
    # logged losses and validation are reduced over both ranks: the same numbers as the single process
    for got, want in zip(train_rows(ddp), train_rows(single), strict=True):
        assert got[:2] == want[:2] and got[2:] == pytest.approx(want[2:], abs=1e-5)
    state = torch.load(ddp / "checkpoints" / "step_00000012.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # each rank's own stream
