"""A toy stage and data set for the trainer tests, and a command line to run them in a subprocess or torchrun.

The data: sample ``index`` of ``epoch`` is ``x ~ N(0, 1)^8`` drawn from ``sample_generator(seed, epoch, index)``
and its box ``sigmoid(x @ W)`` (xywh normalised, ``W`` fixed), so samples are pure functions of (seed, epoch,
index), as in the real pipeline, and go through the real ``TrainLoader`` (its resume hook, its workers); ``skips``
gives chosen samples ``skipped_io``/``skipped_invalid`` counts, as the pipeline reports re-made draws. The
model: a two-layer MLP whose first layer is ``backbone`` and second ``box_head`` (two optimizer groups), with
dropout ``model.drop_path_rate`` so that resuming must restore the RNG states.

    python tests/trainer_toy.py --output DIR [--set KEY=VALUE ...] [--resume auto] [--dump-weights FILE]

Environment: ``TOY_NAN_INDICES`` (comma-separated global sample indices whose ``x`` is NaN), ``TOY_HANG_AT_STEP``
with ``TOY_HANG_MARKER`` (at that iteration, write the marker file and sleep until killed).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mixformerv2.boxes import xywh_to_xyxy, xyxy_to_xywh
from mixformerv2.config import Config, load_config
from mixformerv2.data.pipeline import TrainLoader
from mixformerv2.data.sampling import rank_indices, sample_generator
from mixformerv2.models import build_model
from mixformerv2.train.distributed import DistInfo
from mixformerv2.train.run import run_training
from mixformerv2.train.stage import BaseStage, list_stages, register_stage
from mixformerv2.utils.log import setup_logging

IN_DIM, HIDDEN = 8, 16
TOY_CONFIG = ["train.stage=toy", "train.epochs=2", "train.batch_size_per_process=4", "train.lr=0.01",
              "train.print_interval=4", "train.grad_clip_norm=1.0", "train.val_interval=1", "train.keep_last=2",
              "data.samples_per_epoch=48", "data.val_samples_per_epoch=16", "data.num_workers=0",
              "model.drop_path_rate=0.0"]


class ToyNet(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(IN_DIM, HIDDEN), nn.GELU(), nn.Dropout(dropout))
        self.box_head = nn.Linear(HIDDEN, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 8) -> (B, 4) xywh in [0, 1]."""
        return torch.sigmoid(self.box_head(self.backbone(x)))


def pairwise_iou_xywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 4) xywh, (B, 4) xywh -> (B,) IoU of each pair."""
    a, b = xywh_to_xyxy(a), xywh_to_xyxy(b)
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / union


class ToyStage(BaseStage):
    hang_at_step: int | None = None
    hang_marker: str | None = None

    def loss(self, batch, step):
        if step == self.hang_at_step:
            Path(self.hang_marker).write_text(str(step))
            time.sleep(600)
        pred = self.student(batch["x"])
        loss = F.l1_loss(pred, batch["box"])
        return loss, {"loss/l1": loss.detach(), "iou": pairwise_iou_xywh(pred.detach(), batch["box"]).mean()}


@register_stage("toy")
def build_toy_stage(cfg: Config, device: torch.device) -> ToyStage:
    stage = ToyStage(ToyNet(cfg.model.drop_path_rate).to(device))
    if os.environ.get("TOY_HANG_AT_STEP"):
        stage.hang_at_step = int(os.environ["TOY_HANG_AT_STEP"])
        stage.hang_marker = os.environ["TOY_HANG_MARKER"]
    return stage


class TinyBoxStage(BaseStage):
    """A real (tiny) MixFormerV2 on the real pipeline's batches, trained with L1 on its box: for the end-to-end
    run of tools/train.py (not a training recipe)."""

    def loss(self, batch, step):
        templates = batch["template_images"]
        out = self.student(templates[:, 0], templates[:, 1], batch["search_image"])
        target = batch.get("search_box_xywh_norm", batch.get("search_box_norm"))  # the hardening issue's rename
        loss = F.l1_loss(out.box_xyxy_norm, xywh_to_xyxy(target))
        return loss, {"iou": pairwise_iou_xywh(xyxy_to_xywh(out.box_xyxy_norm.detach()), target).mean()}


@register_stage("tiny_box")
def build_tiny_box_stage(cfg: Config, device: torch.device) -> TinyBoxStage:
    return TinyBoxStage(build_model(cfg.model).to(device))


class ToyDataset(Dataset):
    """One rank's share of an epoch of toy samples (see the module docstring); items are loader dicts."""

    target_weight = torch.randn(IN_DIM, 4, generator=torch.Generator().manual_seed(0))

    def __init__(self, samples_per_epoch: int, seed: int, rank: int = 0, world_size: int = 1,
                 nan_indices: frozenset[int] = frozenset(), skips: dict[int, tuple[int, int]] | None = None):
        self.indices = rank_indices(samples_per_epoch, rank, world_size)
        self.seed, self.epoch, self.nan_indices = seed, 0, nan_indices
        self.skips = skips or {}  # global sample index -> (skipped_io, skipped_invalid)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        x = torch.from_numpy(sample_generator(self.seed, self.epoch, index).standard_normal(IN_DIM)).float()
        box = torch.sigmoid(x @ self.target_weight)
        if index in self.nan_indices:
            x = torch.full_like(x, float("nan"))
        skipped_io, skipped_invalid = self.skips.get(index, (0, 0))
        return {"x": x, "box": box, "index": torch.tensor(index), "dataset": "toy", "sequence": f"toy-{index:04d}",
                "skipped_io": torch.tensor(skipped_io), "skipped_invalid": torch.tensor(skipped_invalid)}


def nan_indices_from_env() -> frozenset[int]:
    text = os.environ.get("TOY_NAN_INDICES", "")
    return frozenset(int(i) for i in text.split(",") if i.strip())


def toy_loaders(cfg: Config, dist: DistInfo, nan_indices: frozenset[int] | None = None):
    """The real ``TrainLoader`` over toy samples; validation: ``data.val_samples_per_epoch`` samples of another
    seed, never NaN."""
    nan = nan_indices_from_env() if nan_indices is None else nan_indices
    train = TrainLoader(ToyDataset(cfg.data.samples_per_epoch, cfg.train.seed, dist.rank, dist.world_size, nan),
                        cfg.train.batch_size_per_process, cfg.data.num_workers, seed=cfg.train.seed, rank=dist.rank)
    val = TrainLoader(ToyDataset(cfg.data.val_samples_per_epoch, cfg.train.seed + 1, dist.rank, dist.world_size),
                      cfg.train.batch_size_per_process, 0, seed=cfg.train.seed + 1, rank=dist.rank)
    return train, val


def toy_config(*overrides: str) -> Config:
    """The toy run's config; ``train.stage`` may name the stages registered here (``toy``, ``tiny_box``)."""
    return load_config(None, [*TOY_CONFIG, *overrides], stages=list_stages())


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--output", required=True)
    p.add_argument("--set", dest="overrides", nargs="*", default=[])
    p.add_argument("--resume", default="auto")
    p.add_argument("--dump-weights", default=None, help="also save this rank's final weights to FILE.rank<r>")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", 0))
    setup_logging(logging.INFO, rank, Path(args.output) / "train.log" if rank == 0 else None)
    trainer = run_training(toy_config(*args.overrides), args.output, resume=args.resume, device="cpu",
                           loaders=toy_loaders, progress=False)
    if args.dump_weights:
        torch.save(trainer.stage.finalize().state_dict(), f"{args.dump_weights}.rank{rank}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
