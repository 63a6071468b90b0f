"""The training loop shared by every stage: AdamW, schedule, AMP, accumulation, clipping, NaN guard, checkpoints.

The trainer knows only the ``Stage`` protocol (``stage.py``). An *iteration* is one optimizer step: each process
runs ``train.grad_accum_steps`` batches of ``train.batch_size_per_process``, the gradient is their mean (and, under
DDP, the mean over ranks), so a run's trajectory depends on the global batch ``world_size * grad_accum_steps *
batch_size_per_process``, not on how it is split. The learning rate is a pure function of the iteration
(``schedules.lr_factor``), so a resumed run continues exactly; an epoch is ``len(train_loader) //
grad_accum_steps`` iterations (left-over batches unused).

A non-finite loss (on any rank) or gradient skips the iteration: no optimizer and no GradScaler update, counted,
logged with the batch's sequence names; ``train.max_bad_steps`` in a row raise ``NonFiniteError``, leaving the last
checkpoint as it was. With fp16 a non-finite gradient of a finite loss is the GradScaler's overflow, handled by
it (step skipped, scale lowered) and counted apart.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from tqdm import tqdm

from ..config import Config, ConfigError, config_to_dict, dump_config
from ..models.checkpoint import CheckpointError, save_checkpoint
from ..utils.version import code_version
from .checkpointing import (STATE_FORMAT, CheckpointManager, ResumeError, capture_rng_state, config_differences,
                            describe_version, load_state, restore_rng_state)
from .distributed import DistInfo, any_rank, gather_objects, reduce_sum, wrap_ddp
from .metrics_log import MetricsLogger
from .schedules import lr_factor
from .stage import Stage

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}  # the names of config.schema.AMP_DTYPES
SKIP_COUNT_KEYS = ("skipped_io", "skipped_invalid")  # per-sample counts of draws the pipeline re-made
MODEL_FILE = "model_final.pth.tar"


class NonFiniteError(RuntimeError):
    """Too many consecutive iterations with a non-finite loss or gradient; the message names the iteration."""


NAN_GUARD_STATUS = 3  # exit status of the training tools when a NonFiniteError stops them


def batch_names(batch: Mapping[str, Any]) -> list[str]:
    """``dataset/sequence`` of each sample of a loader batch (the pipeline's keys), else its sample indices."""
    sequences, datasets = batch.get("sequence"), batch.get("dataset")
    if isinstance(sequences, (list, tuple)):
        if isinstance(datasets, (list, tuple)):
            return [f"{d}/{s}" for d, s in zip(datasets, sequences)]
        return [str(s) for s in sequences]
    index = batch.get("index")
    return [f"sample {i}" for i in index.tolist()] if torch.is_tensor(index) else ["<unnamed batch>"]


def skipped_draws(batch: Mapping[str, Any]) -> int:
    """Draws the pipeline re-made for this batch (missing or corrupt frames, invalid samples): the sum of its
    per-sample ``skipped_io`` and ``skipped_invalid`` counts; 0 for a batch without them."""
    return sum(int(batch[key].sum()) for key in SKIP_COUNT_KEYS if torch.is_tensor(batch.get(key)))


def batch_size_of(batch: Mapping[str, Any]) -> int:
    """Leading dimension of the first tensor of a batch."""
    for value in batch.values():
        if torch.is_tensor(value) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError(f"batch has no tensor with a batch dimension (keys: {sorted(batch)})")


@dataclass
class _Window:
    """Sums over the iterations since the last logging point (this rank)."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    good: int = 0
    samples: int = 0
    skipped_samples: int = 0
    wait_s: float = 0.0
    start: float = field(default_factory=time.perf_counter)


class Trainer:
    """Trains ``stage`` on ``train_loader`` as ``cfg.train`` says, writing into ``output_dir`` (rank 0).

    ``train_loader``: ``set_epoch(epoch, start_batch)``, ``len()`` (batches per epoch and process) and iteration
    over dict batches (``data.pipeline.TrainLoader``); ``val_loader``: any iterable of such batches, or None.
    Call ``resume(...)`` (optional), then ``fit()``.
    """

    def __init__(self, stage: Stage, cfg: Config, train_loader, output_dir: str | Path, val_loader=None,
                 dist: DistInfo = DistInfo(), device: torch.device | str = "cpu", progress: bool = True):
        t = cfg.train
        self.stage, self.cfg, self.dist, self.device = stage, cfg, dist, torch.device(device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.output_dir, self.progress = Path(output_dir), progress
        self.ddp_modules: list[torch.nn.Module] = []
        if dist.enabled:
            stage.wrap_modules(self._wrap)
        groups = stage.param_groups(t)
        for group in groups:
            group["base_lr"] = group["lr"]
        self.params = [p for g in groups for p in g["params"]]
        if not self.params:
            raise ValueError(f"train.stage {t.stage!r}: the stage has no trainable parameters")
        self.optimizer = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
        self.amp_dtype = AMP_DTYPES[t.amp_dtype] if t.amp else None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.accum = t.grad_accum_steps
        self.steps_per_epoch = len(train_loader) // self.accum
        if self.steps_per_epoch < 1:
            raise ConfigError(f"data.samples_per_epoch: {len(train_loader)} batches of "
                              f"train.batch_size_per_process {t.batch_size_per_process} per process, fewer than "
                              f"train.grad_accum_steps {self.accum}")
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.scheduler == "cosine" and t.warmup_iters >= self.total_steps:
            raise ConfigError(f"train.warmup_iters: {t.warmup_iters} is not below the run's {self.total_steps} "
                              f"iterations (train.epochs {t.epochs} x {self.steps_per_epoch} per epoch)")
        self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", t.keep_last, dist.is_main)
        self.code_version = code_version()
        self.step = self.epoch = self.batch_in_epoch = 0  # iterations done; current epoch; its batches done
        self.bad_in_row = self.skipped_steps = self.overflow_steps = 0
        self.resumed_from: Path | None = None
        self.model_path: Path | None = None
        self.metrics: MetricsLogger | None = None

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        wrapped = wrap_ddp(module, self.dist, self.device)
        self.ddp_modules.append(wrapped)
        return wrapped

    # -- checkpoints --------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The full training state (a collective under DDP: every rank contributes its RNG states)."""
        return {
            "format": STATE_FORMAT, "stage": self.stage.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "samples_in_epoch": self.batch_in_epoch * self.cfg.train.batch_size_per_process,
            "skipped_steps": self.skipped_steps, "overflow_steps": self.overflow_steps,
            "world_size": self.dist.world_size, "rng": gather_objects(capture_rng_state(), self.dist),
            "config": config_to_dict(self.cfg), "config_yaml": dump_config(self.cfg),
            "code_version": self.code_version,
        }

    def save(self) -> Path | None:
        """Write the training state, except during a run of non-finite iterations: their forward passes may have
        touched buffers, so the last checkpoint before the run stays the one to resume from."""
        if self.bad_in_row:
            logger.warning("iteration %d: no checkpoint during %d non-finite iteration(s) in a row", self.step,
                           self.bad_in_row)
            return None
        return self.checkpoints.save(self.state_dict(), self.step)

    def resume(self, resume: str = "auto") -> None:
        """``auto``: the newest checkpoint of the output folder, if any; ``none``: a fresh run; else a path. The
        checkpoint's config must equal this run's (except ``RESUME_FREE_KEYS``) and so must the world size."""
        path = self.checkpoints.resolve(resume)
        if path is None:
            logger.info("no checkpoint to resume from in %s: starting from scratch", self.checkpoints.directory)
            return
        state = load_state(path)
        differences = config_differences(state["config"], config_to_dict(self.cfg))
        if differences:
            more = f" and {len(differences) - 1} more key(s)" if len(differences) > 1 else ""
            raise ResumeError(f"{path}: its config differs from this run's at {differences[0]}{more}; resume with "
                              f"the same config, or start a new run with another --output")
        if state["world_size"] != self.dist.world_size:
            raise ResumeError(f"{path}: written by {state['world_size']} process(es), this run has "
                              f"{self.dist.world_size}; resume with the same number of processes")
        try:
            self.stage.load_state_dict(state["stage"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (CheckpointError, KeyError, RuntimeError, ValueError) as err:
            raise ResumeError(f"{path}: {err}") from None
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.skipped_steps, self.overflow_steps = state["skipped_steps"], state["overflow_steps"]
        restore_rng_state(state["rng"][self.dist.rank])
        self.resumed_from = path
        logger.info("resumed from %s: epoch %d, iteration %d, batch %d of the epoch (written by code %s)", path,
                    self.epoch, self.step, self.batch_in_epoch, describe_version(state["code_version"]))
        if state["code_version"] != self.code_version:
            logger.warning("%s was written by code %s, this run is code %s: the rest of the run may differ from "
                           "an uninterrupted one", path, describe_version(state["code_version"]),
                           describe_version(self.code_version))

    # -- the loop -----------------------------------------------------------------------------------------------

    def fit(self) -> torch.nn.Module:
        """Train to ``train.epochs``; write the stage's final model (``model_final.pth.tar``, official layout)."""
        self.metrics = MetricsLogger(self.output_dir, enabled=self.dist.is_main,
                                     resume_step=self.step if self.resumed_from else None)
        bar = tqdm(total=self.total_steps, initial=self.step, unit="it", dynamic_ncols=True,
                   disable=not (self.progress and self.dist.is_main))
        try:
            while self.epoch < self.cfg.train.epochs:
                self._train_epoch(bar)
                self.epoch += 1
                self.batch_in_epoch = 0
                self.save()
                interval = self.cfg.train.val_interval
                last = self.epoch == self.cfg.train.epochs
                if self.val_loader is not None and interval and (self.epoch % interval == 0 or last):
                    self.validate()
        finally:
            bar.close()
            self.metrics.close()
        model = self.stage.finalize()
        self.model_path = self.output_dir / MODEL_FILE
        if self.dist.is_main:
            extra = {"epoch": self.epoch, "iteration": self.step, "config": dump_config(self.cfg),
                     "code_version": self.code_version}
            # a stage may record what its surgery did (removed layers, their fade rate, the shallower config)
            extra.update(getattr(self.stage, "final_extra", dict)())
            save_checkpoint(model, self.model_path, **extra)
            logger.info("final model: %s", self.model_path)
        return model

    def _train_epoch(self, bar: tqdm) -> None:
        self.stage.on_epoch_start(self.epoch)
        self.stage.train()
        self.train_loader.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
        batches = iter(self.train_loader)
        window = _Window()
        end_batch = self.steps_per_epoch * self.accum
        for _ in range(self.batch_in_epoch // self.accum, self.steps_per_epoch):
            self._iteration(batches, window)
            bar.update(1)
            if self.step % self.cfg.train.print_interval == 0:
                self._log_window(window, bar)
                window = _Window()
            interval = self.cfg.train.checkpoint_interval
            if interval and self.step % interval == 0 and self.batch_in_epoch < end_batch:
                self.save()
        if window.samples:
            self._log_window(window, bar)
        del batches  # stops the loader's workers (left-over batches of an uneven epoch are not used)

    def _iteration(self, batches: Iterator[dict], window: _Window) -> None:
        """One optimizer step from ``grad_accum_steps`` batches."""
        sums: dict[str, float] = defaultdict(float)
        names, bad_names = [], []
        for micro in range(self.accum):
            start = time.perf_counter()
            batch = next(batches)
            window.wait_s += time.perf_counter() - start
            batch = self.to_device(batch)
            window.samples += batch_size_of(batch)
            window.skipped_samples += skipped_draws(batch)
            names += batch_names(batch)
            with self._no_sync(micro < self.accum - 1):
                with self.autocast():
                    loss, metrics = self.stage.loss(batch, self.step)
                # backward also for a non-finite loss: under DDP every rank must join each gradient all-reduce
                self.scaler.scale(loss / self.accum).backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                bad_names += batch_names(batch)
            sums["loss"] += value / self.accum
            for key, metric in metrics.items():
                sums[key] += float(metric) / self.accum
            self.batch_in_epoch += 1
        outcome, grad_norm = self.optimizer_step(any_rank(bool(bad_names), self.dist, self.device))
        if outcome == "ok":
            self.bad_in_row = 0
            window.good += 1
            sums["grad_norm"] = grad_norm
            for key, value in sums.items():
                window.sums[key] += value
        elif outcome != "overflow":
            self._bad_step(outcome, bad_names or names)
        self.step += 1

    def optimizer_step(self, bad_loss: bool) -> tuple[str, float]:
        """Set the learning rate, unscale, clip and step; returns (``ok`` | ``bad_loss`` | ``bad_grad`` |
        ``overflow``, gradient norm before clipping)."""
        t = self.cfg.train
        factor = lr_factor(t.scheduler, self.step, self.steps_per_epoch, drop_epoch=t.lr_drop_epoch,
                           gamma=t.lr_drop_gamma, epochs=t.epochs, warmup_steps=t.warmup_iters,
                           min_factor=t.min_lr_factor)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        outcome, norm = "bad_loss", math.nan
        if not bad_loss:
            self.scaler.unscale_(self.optimizer)
            max_norm = self.cfg.train.grad_clip_norm if self.cfg.train.grad_clip_norm > 0 else math.inf
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            if math.isfinite(norm) or self.scaler.is_enabled():
                self.scaler.step(self.optimizer)  # the scaler skips the step itself on an fp16 overflow
                self.scaler.update()
                outcome = "ok" if math.isfinite(norm) else "overflow"
            else:
                outcome = "bad_grad"
        self.optimizer.zero_grad(set_to_none=True)
        if outcome == "overflow":
            self.overflow_steps += 1
            logger.info("iteration %d: fp16 gradient overflow; the GradScaler skips the step and lowers its scale "
                        "to %g", self.step, self.scaler.get_scale())
        return outcome, norm

    def _bad_step(self, outcome: str, names: list[str]) -> None:
        self.bad_in_row += 1
        self.skipped_steps += 1
        what = "loss" if outcome == "bad_loss" else "gradient"
        everywhere = [n for rank_names in gather_objects(names, self.dist) for n in rank_names]
        shown = ", ".join(everywhere[:8]) + (f" and {len(everywhere) - 8} more" if len(everywhere) > 8 else "")
        logger.warning("iteration %d (epoch %d): non-finite %s, step skipped (%d in a row, %d in all); batch: %s",
                       self.step, self.epoch, what, self.bad_in_row, self.skipped_steps, shown)
        limit = self.cfg.train.max_bad_steps
        if self.bad_in_row >= limit:
            raise NonFiniteError(
                f"iteration {self.step} (epoch {self.epoch}): {self.bad_in_row} consecutive iterations with a "
                f"non-finite loss or gradient (train.max_bad_steps = {limit}), last batch: {shown}; stopping. The "
                f"last checkpoint is intact: {self.checkpoints.latest() or 'none written yet'}")

    # -- helpers ------------------------------------------------------------------------------------------------

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def _no_sync(self, skip: bool):
        """Inside: DDP does not all-reduce gradients (accumulation batches before the last)."""
        stack = contextlib.ExitStack()
        if skip:
            for module in self.ddp_modules:
                stack.enter_context(module.no_sync())
        return stack

    def _lr_scalars(self) -> dict[str, float]:
        return {f"lr/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)}

    def _log_window(self, window: _Window, bar: tqdm) -> None:
        """Reduce a window over the ranks (a collective) and log it: means of the stage's metrics over good
        iterations, gradient norm, learning rates, samples/s, data-wait fraction and skip counts."""
        elapsed = time.perf_counter() - window.start
        total = reduce_sum({**window.sums, "_good": window.good, "_samples": window.samples,
                            "_wait": window.wait_s, "_elapsed": elapsed, "_skipped_samples": window.skipped_samples},
                           self.dist, self.device)
        ranks = self.dist.world_size
        scalars = {k: v / total["_good"] for k, v in total.items() if not k.startswith("_") and total["_good"]}
        scalars.update(self._lr_scalars())
        scalars.update(samples_per_s=total["_samples"] / max(total["_elapsed"] / ranks, 1e-9),
                       data_wait_fraction=total["_wait"] / max(total["_elapsed"], 1e-9),
                       skipped_steps=self.skipped_steps, skipped_samples=total["_skipped_samples"],
                       fp16_overflows=self.overflow_steps)
        self.metrics.log("train", self.step, self.epoch, scalars)
        shown = " ".join(f"{k} {v:.4g}" for k, v in scalars.items() if not k.startswith("lr/"))
        logger.info("epoch %d iteration %d/%d: %s", self.epoch, self.step, self.total_steps, shown)
        if "loss" in scalars:
            bar.set_postfix(loss=f"{scalars['loss']:.4f}", refresh=False)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss and stage metrics over the validation loader (all ranks), logged as ``val/...``."""
        self.stage.eval()
        sums: dict[str, float] = defaultdict(float)
        count = 0
        for batch in self.val_loader:
            batch = self.to_device(batch)
            size = batch_size_of(batch)
            with self.autocast():
                loss, metrics = self.stage.loss(batch, self.step)
            sums["loss"] += float(loss) * size
            for key, value in metrics.items():
                sums[key] += float(value) * size
            count += size
        self.stage.train()
        total = reduce_sum({**sums, "_count": count}, self.dist, self.device)
        if not total["_count"]:
            logger.warning("epoch %d: the validation loader gave no batch", self.epoch)
            return {}
        scalars = {k: v / total["_count"] for k, v in total.items() if not k.startswith("_")}
        summary = getattr(self.stage, "validation_summary", None)
        if summary is not None:  # split-level metrics (AUROC, precision) are not means of per-batch values
            scalars.update(summary(lambda local: gather_objects(local, self.dist)))
        if self.metrics is not None:
            self.metrics.log("val", self.step, self.epoch, scalars)
        logger.info("epoch %d validation: %s", self.epoch, " ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
        return scalars
