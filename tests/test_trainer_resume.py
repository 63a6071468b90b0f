"""Kill test (issue #9): a toy run SIGKILLed after a mid-epoch checkpoint and resumed with ``--resume auto`` ends
with the weights of an uninterrupted run, with dropout (RNG states) and two DataLoader workers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mixformerv2.train.checkpointing import list_checkpoints
from mixformerv2.train.run import run_training
from trainer_toy import toy_config, toy_loaders

TOY = Path(__file__).with_name("trainer_toy.py")
REPO = TOY.parent.parent
# 2 epochs x 12 iterations; states at 5, 10, 12, 15, 20, 24; dropout 0.1; two workers per loader
RUN = ["train.checkpoint_interval=5", "data.num_workers=2", "model.drop_path_rate=0.1"]


def toy_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def test_sigkilled_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    killed, marker = tmp_path / "killed", tmp_path / "hanging"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(TOY), "--output", str(killed), "--set", *RUN], env=toy_env(
            TOY_HANG_AT_STEP="17", TOY_HANG_MARKER=str(marker)), stdout=log, stderr=log, start_new_session=True)
    try:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the subprocesses
        try:
            reference = run_training(toy_config(*RUN), tmp_path / "reference", device="cpu", loaders=toy_loaders,
                                     progress=False)
        finally:
            torch.set_num_threads(threads)
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the toy run never reached iteration 17"
            time.sleep(0.2)
        # iteration 17 runs: the newest state is iteration 15, batch 3 of epoch 1
        assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["step_00000012.pt", "step_00000015.pt"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its DataLoader workers
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "model_final.pth.tar").exists()
    state = torch.load(killed / "checkpoints" / "step_00000015.pt", weights_only=True)
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 3)

    resumed = subprocess.run([sys.executable, str(TOY), "--output", str(killed), "--resume", "auto", "--set", *RUN],
                             env=toy_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {killed / 'checkpoints' / 'step_00000015.pt'}: epoch 1, iteration 15" in resumed.stderr
    final = torch.load(killed / "model_final.pth.tar", weights_only=True)["net"]
    expected = reference.stage.finalize().state_dict()
    assert final.keys() == expected.keys()
    for key in final:
        assert torch.allclose(final[key], expected[key], atol=1e-6, rtol=0), key
