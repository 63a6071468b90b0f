"""One training run, wired top to bottom: processes, seeds, stage, loaders, trainer, resume, fit.

``run_training`` is what ``tools/train.py`` calls, alone or under ``torchrun``. The output folder receives
``config.yaml`` (the resolved config), ``checkpoints/step_*.pt`` (full training states), ``train.log``,
``metrics.jsonl``, ``tensorboard/`` and, at the end, ``model_final.pth.tar`` (``{'net': state_dict}``).
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import Config, ConfigError, dump_config, validate_config
from ..data.pipeline import build_train_loader, load_train_datasets
from ..utils.device import available_cpus
from ..utils.io import atomic_write_text
from .chaining import ChainError
from .checkpointing import describe_version
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .stage import build_stage, list_stages
from .trainer import Trainer

logger = logging.getLogger(__name__)

LoaderFactory = Callable[[Config, DistInfo], tuple[object, object | None]]


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (model init, dropout; samples have their own)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loaders(cfg: Config, dist: DistInfo) -> tuple[object, object | None]:
    """This rank's training loader over ``data.train_datasets`` and, when ``train.val_interval`` and
    ``data.val_samples_per_epoch`` are set, a validation loader over ``data.val_datasets``: the same processing,
    always the samples of epoch 0, so every validation pass sees the same held-out set."""
    train = build_train_loader(cfg, _open_datasets(cfg, "data.train_datasets"), dist.rank, dist.world_size)
    d = cfg.data
    if not (cfg.train.val_interval and d.val_datasets and d.val_samples_per_epoch > 0):
        return train, None
    val_cfg = replace(cfg, data=replace(d, train_datasets=d.val_datasets, train_ratios=d.val_ratios,
                                        samples_per_epoch=d.val_samples_per_epoch))
    return train, build_train_loader(val_cfg, _open_datasets(val_cfg, "data.val_datasets"), dist.rank,
                                     dist.world_size)


def _open_datasets(cfg: Config, key: str):
    """The readers of ``cfg.data.train_datasets``; an unknown name or unusable root raises ``ConfigError``
    naming ``key`` (missing files stay ``OSError``s naming the file)."""
    try:
        return load_train_datasets(cfg)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"{key}: {err}") from None


def cpu_threads(cfg: Config, dist: DistInfo) -> int:
    """torch intra-op threads for one training process on a CPU device: ``train.cpu_threads``, or (0) this node's
    logical CPUs shared among its processes (torchrun's ``LOCAL_WORLD_SIZE``) minus ``data.num_workers``, at least
    1, so that compute threads and loader processes do not contend for the same cores."""
    if cfg.train.cpu_threads:
        return cfg.train.cpu_threads
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size))
    return max(1, available_cpus() // max(1, local_processes) - cfg.data.num_workers)


def run_training(cfg: Config, output_dir: str | Path, resume: str = "auto", device: str | torch.device = "cpu",
                 loaders: LoaderFactory = build_loaders, progress: bool = True,
                 config_file: str | Path | None = None) -> Trainer:
    """Train the stage ``cfg.train.stage`` names; returns the finished ``Trainer`` (``model_path``, counters).

    resume: ``auto`` (the newest checkpoint in ``output_dir``, if any), ``none`` or a checkpoint path.
    config_file: the file ``cfg`` was loaded from, named in a ``ChainError`` (an init checkpoint that does not fit).
    Raises ``ConfigError``/``ResumeError``/``CheckpointError`` on bad input and ``NonFiniteError`` when the NaN
    guard stops the run.
    """
    validate_config(cfg, stages=list_stages())  # a config made with dataclasses.replace skipped the loader's checks
    dist, device = init_distributed(device)
    previous_threads = torch.get_num_threads()
    try:
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg, dist))
            logger.info("%d torch thread(s) per process (train.cpu_threads %d, data.num_workers %d)",
                        torch.get_num_threads(), cfg.train.cpu_threads, cfg.data.num_workers)
        seed_all(cfg.train.seed)  # the same initial weights on every rank
        try:
            stage = build_stage(cfg, device)
        except ChainError as err:
            if config_file is None:
                raise
            raise err.for_config(config_file) from None
        seed_all(cfg.train.seed + dist.rank)  # independent dropout per rank
        train_loader, val_loader = loaders(cfg, dist)
        trainer = Trainer(stage, cfg, train_loader, output_dir, val_loader=val_loader, dist=dist, device=device,
                          progress=progress)
        trainer.resume(resume)
        if dist.is_main:
            atomic_write_text(Path(output_dir) / "config.yaml", dump_config(cfg))
        logger.info("stage %s, %d process(es), %d iterations per epoch of %d samples per process, code %s, "
                    "output %s", cfg.train.stage, dist.world_size, trainer.steps_per_epoch,
                    trainer.accum * cfg.train.batch_size_per_process * trainer.steps_per_epoch,
                    describe_version(trainer.code_version), output_dir)
        trainer.fit()
        return trainer
    finally:
        torch.set_num_threads(previous_threads)
        cleanup_distributed()
