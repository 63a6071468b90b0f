"""Trainer core (issue #9): the train config's rules, schedules as the trainer applies them, parameter groups,
accumulation, AMP, NaN guard, checkpoints, resume checks, logs, and the loader's mid-epoch start. Toy stage and
data: tests/trainer_toy.py; runs are in-process and tiny."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mixformerv2.config import ConfigError, load_config
from mixformerv2.data.pipeline import TrainLoader
from mixformerv2.models.checkpoint import load_checkpoint
from mixformerv2.train.checkpointing import (CheckpointManager, ResumeError, capture_rng_state, config_differences,
                                             describe_version, list_checkpoints, load_state, restore_rng_state,
                                             save_state)
from mixformerv2.train.distributed import DistInfo
from mixformerv2.train.run import cpu_threads, run_training
from mixformerv2.train.stage import Stage, build_stage, list_stages, official_param_groups
from mixformerv2.train.trainer import NonFiniteError, Trainer
from mixformerv2.utils.version import code_version
from trainer_toy import ToyDataset, ToyNet, ToyStage, toy_config, toy_loaders


def run_toy(output, *overrides, nan=frozenset(), resume="auto"):
    """A full in-process toy run (2 epochs x 12 iterations of 4 samples unless overridden)."""
    return run_toy_config(toy_config(*overrides), output, nan=nan, resume=resume)


def run_toy_config(cfg, output, nan=frozenset(), resume="auto"):
    return run_training(cfg, output, resume=resume, device="cpu", loaders=partial(toy_loaders, nan_indices=nan),
                        progress=False)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.stage.finalize().state_dict().items()}


def assert_weights_close(a, b, atol):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), (key, (a[key] - b[key]).abs().max())


# -- pure functions -------------------------------------------------------------------------------------------------


def test_official_param_groups_split_backbone_and_leave_frozen_out():
    net = ToyNet()
    net.backbone[0].bias.requires_grad_(False)
    groups = official_param_groups(net.named_parameters(), lr=4e-4, backbone_lr_multiplier=0.1)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 4e-4), ("backbone", pytest.approx(4e-5))]
    assert [id(p) for p in groups[0]["params"]] == [id(net.box_head.weight), id(net.box_head.bias)]
    assert [id(p) for p in groups[1]["params"]] == [id(net.backbone[0].weight)]


def test_toy_stage_satisfies_the_protocol_and_unknown_stage_names_the_key(tmp_path):
    assert isinstance(ToyStage(ToyNet()), Stage)
    assert {"toy", "tiny_box"} <= set(list_stages())
    # the loader checks train.stage against the stages it is given (here the registered ones) ...
    with pytest.raises(ConfigError, match=r"^--set train\.stage=nope: train\.stage: 'nope' is not one of .*toy"):
        toy_config("train.stage=nope")
    # ... and against the package's own enumeration by default
    with pytest.raises(ConfigError, match=r"train\.stage: 'toy' is not one of teacher, dense_to_sparse"):
        load_config(None, ["train.stage=toy"])
    # a config made with dataclasses.replace skipped the loader: building or running it still names the key
    cfg = toy_config()
    bad = replace(cfg, train=replace(cfg.train, stage="nope"))
    with pytest.raises(ConfigError, match=r"train\.stage: unknown stage 'nope'.*toy"):
        build_stage(bad, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^config: train\.stage: 'nope' is not one of"):
        run_toy_config(bad, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("setting, message", [
    ("scheduler: linear", r"train\.scheduler: 'linear' is not one of step, cosine"),
    ("amp_dtype: float8", r"train\.amp_dtype: 'float8' is not one of bfloat16, float16"),
    ("min_lr_factor: 1.5", r"train\.min_lr_factor: must be in \[0, 1\], got 1\.5"),
    ("grad_accum_steps: 0", r"train\.grad_accum_steps: must be >= 1, got 0"),
    ("max_bad_steps: 0", r"train\.max_bad_steps: must be >= 1, got 0"),
    ("batch_size_per_process: 0", r"train\.batch_size_per_process: must be >= 1, got 0"),
    ("checkpoint_interval: -1", r"train\.checkpoint_interval: must be >= 0, got -1"),
    ("val_interval: -1", r"train\.val_interval: must be >= 0, got -1"),
    ("warmup_iters: -5", r"train\.warmup_iters: must be >= 0, got -5"),
    ("lr_drop_epoch: 0", r"train\.lr_drop_epoch: must be >= 1 with train\.scheduler step"),
    ("batch_size: 8", r"train\.batch_size: unknown key"),  # renamed: batch_size_per_process
])
def test_train_config_rules_name_the_file_and_key(tmp_path, setting, message):
    path = tmp_path / "stage.yaml"
    path.write_text(f"train:\n  {setting}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        load_config(path)


def test_train_config_accepts_the_trainer_settings():
    cfg = load_config(None, ["train.scheduler=cosine", "train.lr_drop_epoch=0", "train.val_interval=0",
                             "train.amp_dtype=float16", "train.min_lr_factor=1", "train.batch_size_per_process=2"])
    assert (cfg.train.scheduler, cfg.train.val_interval, cfg.train.batch_size_per_process) == ("cosine", 0, 2)


@pytest.mark.parametrize("cpus, local_processes, workers, setting, expected", [
    (2, None, 1, 0, 1),  # this machine: one loader process, one compute thread
    (16, None, 4, 0, 12),
    (16, "4", 2, 0, 2),  # torchrun: 4 processes on the node share its 16 CPUs, each with 2 loader workers
    (4, None, 8, 0, 1),  # never fewer than 1
    (16, None, 4, 3, 3),  # set by hand
])
def test_cpu_training_threads_leave_the_loader_processes_their_cores(monkeypatch, cpus, local_processes, workers,
                                                                      setting, expected):
    import mixformerv2.train.run as run

    monkeypatch.setattr(run, "available_cpus", lambda: cpus)
    if local_processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    cfg = load_config(None, [f"data.num_workers={workers}", f"train.cpu_threads={setting}"])
    assert cpu_threads(cfg, DistInfo()) == expected


def test_trainer_rejects_settings_that_do_not_fit_the_data(tmp_path):
    cfg = toy_config("train.grad_accum_steps=13")  # 12 batches per epoch
    with pytest.raises(ConfigError, match=r"fewer than train\.grad_accum_steps 13"):
        Trainer(ToyStage(ToyNet()), cfg, *toy_loaders(cfg, DistInfo())[:1], tmp_path)
    cfg = toy_config("train.scheduler=cosine", "train.warmup_iters=24")  # 2 epochs x 12 iterations
    with pytest.raises(ConfigError, match=r"train\.warmup_iters: 24 is not below the run's 24 iterations"):
        Trainer(ToyStage(ToyNet()), cfg, *toy_loaders(cfg, DistInfo())[:1], tmp_path)


@pytest.mark.parametrize("schedule, expected", [
    # step: linear warm-up over 4 iterations, x0.1 after each epoch of 12 iterations; row s logs iteration s - 1
    (["train.scheduler=step", "train.lr_drop_epoch=1", "train.warmup_iters=4"],
     {2: 2 / 4, 4: 1.0, 12: 1.0, 14: 0.1, 24: 0.1}),
    # cosine from 1 after 8 warm-up iterations to 0.1 at iteration 24
    (["train.scheduler=cosine", "train.warmup_iters=8", "train.min_lr_factor=0.1"],
     {2: 2 / 8, 8: 1.0, 12: 0.1 + 0.45 * (1 + math.cos(math.pi * 3 / 16)), 16: 0.1 + 0.45 * (1 + math.cos(
         math.pi * 7 / 16)), 24: 0.1 + 0.45 * (1 + math.cos(math.pi * 15 / 16))}),
])
def test_trainer_applies_the_schedule_to_every_group(tmp_path, schedule, expected):
    run_toy(tmp_path, "train.print_interval=2", *schedule)
    rows = {r["step"]: r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
            if r["split"] == "train"}
    for step, factor in expected.items():
        assert rows[step]["lr/head"] == pytest.approx(0.01 * factor), step
        assert rows[step]["lr/backbone"] == pytest.approx(0.001 * factor), step


def test_rng_states_round_trip():
    state = capture_rng_state()
    drawn = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert drawn[:2] == again[:2] and torch.equal(drawn[2], again[2])


def test_config_differences_name_keys_and_ignore_free_ones():
    a = {"train": {"lr": 1e-4, "keep_last": 3}, "data": {"num_workers": 8, "train_ratios": [1.0, 2.0]}}
    b = {"train": {"lr": 2e-4, "keep_last": 5}, "data": {"num_workers": 2, "train_ratios": [1.0, 3.0]}}
    assert config_differences(a, b) == ["data.train_ratios (checkpoint [1.0, 2.0], this run [1.0, 3.0])",
                                        "train.lr (checkpoint 0.0001, this run 0.0002)"]


# -- loader resume hook ---------------------------------------------------------------------------------------------


def test_train_loader_start_batch_yields_the_rest_of_the_epoch():
    loader = TrainLoader(ToyDataset(24, seed=3), batch_size=4, num_workers=0, seed=3)
    loader.set_epoch(1)
    full = [b["index"].tolist() for b in loader]
    loader.set_epoch(1, start_batch=4)
    rest = list(loader)
    assert [b["index"].tolist() for b in rest] == full[4:] == [[16, 17, 18, 19], [20, 21, 22, 23]]
    assert len(loader) == 6  # the epoch's length, wherever it starts


# -- runs -----------------------------------------------------------------------------------------------------------


def test_run_writes_outputs_logs_lr_groups_and_validation(tmp_path):
    trainer = run_toy(tmp_path, "train.checkpoint_interval=5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl",
                                                         "model_final.pth.tar", "tensorboard"]
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24]
    assert train[0]["lr/head"] == pytest.approx(0.01) and train[0]["lr/backbone"] == pytest.approx(0.001)
    for key in ("loss", "loss/l1", "iou", "grad_norm", "samples_per_s", "data_wait_fraction", "skipped_steps",
                "skipped_samples"):
        assert key in train[-1]
    val = [r for r in rows if r["split"] == "val"]
    assert [(r["epoch"], r["step"]) for r in val] == [(1, 12), (2, 24)]
    assert val[1]["loss"] < val[0]["loss"] and val[1]["iou"] > val[0]["iou"]  # it learns
    # keep_last=2 of the states at 5, 10, 12 (epoch end), 15, 20, 24; the final model loads strictly
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000020.pt", "step_00000024.pt"]
    net = ToyNet()
    meta = load_checkpoint(net, trainer.model_path)
    assert meta["epoch"] == 2 and meta["iteration"] == 24 and "lr: 0.01" in meta["config"]
    assert_weights_close(net.state_dict(), weights(trainer), atol=0)


def test_checkpoint_holds_full_state_and_loads_weights_only(tmp_path):
    trainer = run_toy(tmp_path, "train.epochs=1", "train.amp=true", "train.amp_dtype=float16")
    state = torch.load(tmp_path / "checkpoints" / "step_00000012.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"], state["world_size"]) == (12, 1, 0, 1)
    assert state["scaler"]["scale"] > 0 and state["optimizer"]["param_groups"][1]["name"] == "backbone"
    assert len(state["rng"]) == 1 and state["rng"][0]["torch"].dtype == torch.uint8
    assert state["config"]["train"]["amp_dtype"] == "float16" and "stage: toy" in state["config_yaml"]
    assert state["code_version"] == code_version()  # utils.version's dict: package, git commit, dirty flag
    assert describe_version({"package": "0.1.0", "git_commit": "a" * 40, "git_dirty": True}) == \
        "0.1.0+gaaaaaaaaaaaa.dirty"
    assert_weights_close(state["stage"]["student"], weights(trainer), atol=0)


def test_bf16_autocast_run_trains(tmp_path):
    trainer = run_toy(tmp_path, "train.amp=true", "train.amp_dtype=bfloat16")
    assert trainer.skipped_steps == 0 and all(torch.isfinite(w).all() for w in weights(trainer).values())


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """2 batches of 4 per iteration draw the same 8 samples as one batch of 8; the mean of the two means is the
    mean, so the weights agree to float rounding."""
    accumulated = run_toy(tmp_path / "a", "train.grad_accum_steps=2")
    large = run_toy(tmp_path / "b", "train.batch_size_per_process=8")
    assert accumulated.step == large.step == 12
    assert_weights_close(weights(accumulated), weights(large), atol=1e-6)


def test_a_non_finite_loss_is_skipped_and_counted(tmp_path, caplog):
    # samples 4-7 are batch 1 of each epoch: iterations 1 and 13 are skipped, the others train
    with caplog.at_level(logging.WARNING, logger="mixformerv2.train.trainer"):
        trainer = run_toy(tmp_path, nan=frozenset(range(4, 8)))
    assert trainer.skipped_steps == 2 and trainer.step == 24
    assert all(trainer.optimizer.state[p]["step"] == 22 for p in trainer.params)  # no update on skipped steps
    assert all(torch.isfinite(w).all() for w in weights(trainer).values())
    messages = [r.getMessage() for r in caplog.records]
    assert any("iteration 1 (epoch 0): non-finite loss" in m and "toy/toy-0004" in m for m in messages)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in rows if r["split"] == "train"] == [1, 1, 1, 2, 2, 2]


def test_k_bad_steps_in_a_row_stop_and_the_last_checkpoint_is_intact(tmp_path):
    cfg = toy_config("train.max_bad_steps=3", "train.checkpoint_interval=2")
    train, _ = toy_loaders(cfg, DistInfo(), nan_indices=frozenset(range(16, 32)))  # iterations 4-7 are NaN
    trainer = Trainer(ToyStage(ToyNet()), cfg, train, tmp_path, progress=False)
    with pytest.raises(NonFiniteError, match=r"iteration 6 \(epoch 0\): 3 consecutive iterations .*"
                                             r"train\.max_bad_steps = 3.*toy/toy-0024.*step_00000004\.pt"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000002.pt", "step_00000004.pt"]
    state = torch.load(tmp_path / "checkpoints" / "step_00000004.pt", weights_only=True)
    assert state["step"] == 4
    # iterations 4-6 were skipped: the weights in memory are still those of the last checkpoint
    assert_weights_close(state["stage"]["student"], weights(trainer), atol=0)


def test_resume_refuses_a_checkpoint_whose_config_differs_naming_the_key(tmp_path):
    run_toy(tmp_path, "train.epochs=1", "data.num_workers=0")
    with pytest.raises(ResumeError, match=r"step_00000012\.pt: its config differs from this run's at train\.lr "
                                          r"\(checkpoint 0\.01, this run 0\.02\)"):
        run_toy(tmp_path, "train.epochs=1", "train.lr=0.02")
    with pytest.raises(ResumeError, match=r"holds checkpoints of an earlier run; resume it with --resume auto"):
        run_toy(tmp_path, "train.epochs=1", resume="none")
    # a key that does not change the trajectory may differ; the finished run resumes at its end
    done = run_toy(tmp_path, "train.epochs=1", "data.num_workers=2")
    assert done.resumed_from.name == "step_00000012.pt" and done.step == 12


def test_resume_auto_logs_its_checkpoint_and_warns_about_other_code(tmp_path, caplog):
    run_toy(tmp_path, "train.epochs=1")
    path = tmp_path / "checkpoints" / "step_00000012.pt"
    state = load_state(path)
    save_state({**state, "code_version": {"package": "0.0.1", "git_commit": "b" * 40, "git_dirty": False}}, path)
    with caplog.at_level(logging.INFO, logger="mixformerv2.train.trainer"):
        run_toy(tmp_path, "train.epochs=1")
    messages = [r.getMessage() for r in caplog.records]
    assert f"resumed from {path}: epoch 1, iteration 12, batch 0 of the epoch (written by code " \
           f"0.0.1+gbbbbbbbbbbbb)" in messages
    assert any(m.startswith(f"{path} was written by code 0.0.1+gbbbbbbbbbbbb, this run is code ") for m in messages)


def test_atomic_save_leaves_no_partial_file_and_a_torn_file_is_refused(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=3)
    manager.save({"format": "mixformerv2-train-state/1", "w": torch.ones(3)}, step=1)

    def crash(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            manager.save({"format": "mixformerv2-train-state/1", "w": torch.zeros(3)}, step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt"]
    assert torch.equal(load_state(tmp_path / "step_00000001.pt")["w"], torch.ones(3))
    torn = tmp_path / "step_00000003.pt"
    torn.write_bytes((tmp_path / "step_00000001.pt").read_bytes()[:100])
    with pytest.raises(ResumeError, match=r"step_00000003\.pt: not a readable checkpoint \(truncated or corrupt"):
        load_state(manager.resolve("auto"))


def test_keep_last_k(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (3, 10, 7, 12):
        manager.save({"format": "mixformerv2-train-state/1"}, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010.pt", "step_00000012.pt"]
    assert CheckpointManager(tmp_path / "other", keep_last=2, is_main=False).save({}, 1) is None
    assert not (tmp_path / "other").exists()


def test_benchmark_refuses_an_epoch_too_short_for_the_steps(tmp_path):
    from mixformerv2.train.benchmark import benchmark_training

    cfg = toy_config()
    trainer = Trainer(ToyStage(ToyNet()), cfg, toy_loaders(cfg, DistInfo())[0], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="12 batches per epoch, fewer than warm-up 3 \\+ steps 10"):
        benchmark_training(trainer, steps=10)
    result = benchmark_training(trainer, steps=4, warmup=1)
    assert result["samples_per_s"] > 0 and result["steps"] == 4 and trainer.step == 0
    assert result["batch_size_per_process"] == 4 and result["threads"]["intra_op"] == torch.get_num_threads()
    assert not any(tmp_path.iterdir())  # nothing written


class GradBombStage(ToyStage):
    """At iteration 2 the loss gains ``sqrt(0 * pred)``: its value is 0, its gradient NaN (inf * 0)."""

    def loss(self, batch, step):
        loss, metrics = super().loss(batch, step)
        if step == 2:
            loss = loss + torch.sqrt((self.student(batch["x"]) * 0).sum())
        return loss, metrics


@pytest.mark.parametrize("amp", ["false", "true"])
def test_a_non_finite_gradient_is_skipped_or_left_to_the_fp16_scaler(tmp_path, caplog, amp):
    cfg = toy_config("train.epochs=1", f"train.amp={amp}", "train.amp_dtype=float16")
    trainer = Trainer(GradBombStage(ToyNet()), cfg, toy_loaders(cfg, DistInfo())[0], tmp_path, progress=False)
    scale = trainer.scaler.get_scale()
    with caplog.at_level(logging.INFO, logger="mixformerv2.train.trainer"):
        trainer.fit()
    assert all(trainer.optimizer.state[p]["step"] == 11 for p in trainer.params)  # 12 iterations, one not applied
    if amp == "false":
        assert (trainer.skipped_steps, trainer.overflow_steps) == (1, 0)
        assert any("iteration 2 (epoch 0): non-finite gradient" in r.getMessage() for r in caplog.records)
    else:  # an fp16 overflow: the scaler's business (scale halved), not a bad step
        assert (trainer.skipped_steps, trainer.overflow_steps) == (0, 1)
        assert trainer.scaler.get_scale() < scale


class TeacherIoUStage(ToyStage):
    """Reports a teacher IoU, as the distillation stage does, to check that stage metrics pass through."""

    def loss(self, batch, step):
        loss, metrics = super().loss(batch, step)
        return loss, {**metrics, "teacher_iou": torch.tensor(0.75)}


def test_logs_skipped_samples_per_window_stage_metrics_and_tensorboard_scalars(tmp_path):
    # samples 1 and 5 (first window of each epoch) and 30 (second window) report re-made draws
    skips = {1: (1, 0), 5: (0, 2), 30: (1, 1)}
    cfg = toy_config()
    train = TrainLoader(ToyDataset(48, cfg.train.seed, skips=skips), 4, 0, seed=cfg.train.seed)
    Trainer(TeacherIoUStage(ToyNet()), cfg, train, tmp_path, progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_samples"] for r in rows] == [3, 2, 0, 3, 2, 0]  # per window of 4 iterations, not per epoch
    assert all(r["teacher_iou"] == pytest.approx(0.75) and 0 <= r["data_wait_fraction"] < 1 for r in rows)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss/l1", "train/iou", "train/teacher_iou", "train/lr/head", "train/lr/backbone",
            "train/grad_norm", "train/samples_per_s", "train/data_wait_fraction", "train/skipped_steps",
            "train/skipped_samples"} <= tags
    assert [e.value for e in events.Scalars("train/skipped_samples")] == [3, 2, 0, 3, 2, 0]
    assert [e.step for e in events.Scalars("train/teacher_iou")] == [4, 8, 12, 16, 20, 24]


def test_cpu_features_read_the_flags_of_cpuinfo(tmp_path):
    from mixformerv2.train.benchmark import cpu_features

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse avx2 avx512f amx_tile amx_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: fpu\n")
    assert cpu_features(info) == {"model": "Test CPU", "avx2": True, "avx512f": True, "avx512_bf16": False,
                                  "amx": True}
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16\n")
    assert cpu_features(info) == {"model": None, "avx2": False, "avx512f": False, "avx512_bf16": True, "amx": False}
    assert cpu_features(tmp_path / "missing") == dict.fromkeys(("model", "avx2", "avx512f", "avx512_bf16", "amx"))
