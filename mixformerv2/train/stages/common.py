"""What the stages share: file paths named in ``train.*``, the networks' inputs from a batch, the box loss terms,
and building a network with its initial weights.

Paths. ``train.init_checkpoint``, ``train.teacher_config`` and ``train.teacher_checkpoint`` are read like every
other path of a run (``data.roots``, ``--output``): a relative path is relative to the current working directory,
not to the YAML file that names it (the resolved config saved into a run folder, and ``--set`` overrides, then
mean the same file). The shipped configs therefore assume the repository root as working directory.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ...config import Config, ConfigError, TrainConfig
from ...models import CheckpointError, build_model, init_from_pretrained, read_checkpoint, unwrap_state_dict
from ...models.checkpoint import remove_layers
from ..chaining import ChainError, adapt_state_dict, checkpoint_model_config, init_mismatches, layout_mismatch
from ..losses import box_l1_loss, ciou_loss, target_xyxy_from_xywh
from ..stage import Metrics

logger = logging.getLogger(__name__)


def config_file(key: str, value: str) -> Path:
    """The existing file that the path key ``key`` (e.g. ``train.teacher_checkpoint``) names.

    Relative paths are read from the working directory. Raises ``ConfigError`` naming the key and the path (and,
    for a relative path, the folder it was looked for in) when ``value`` is empty or not a file.
    """
    if not value:
        raise ConfigError(f"{key}: not set (stage needs a file here)")
    path = Path(value).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative paths are read from the working directory {Path.cwd()})"
        what = "is a folder, not a file" if path.is_dir() else "file not found"
        raise ConfigError(f"{key}: {value}: {what}{where}")
    return path


def network_inputs(batch: Mapping[str, Any]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """(template, online templates, search) of a loader batch: ``template_images[:, 0]`` (B, 3, Hz, Hz), the list
    of ``template_images[:, 1:]``, and ``search_image`` (B, 3, Hx, Hx), as the official actors feed them."""
    templates = batch["template_images"]
    return templates[:, 0], list(templates[:, 1:].unbind(1)), batch["search_image"]


def box_terms(pred_xyxy: torch.Tensor, box_xywh_norm: torch.Tensor, t: TrainConfig) -> tuple[torch.Tensor, Metrics]:
    """``train.iou_weight`` x CIoU + ``train.l1_weight`` x L1 of predicted boxes against the batch's targets.

    Args:
        pred_xyxy: (B, 4) normalised search-crop xyxy (any float dtype; computed in float32).
        box_xywh_norm: (B, 4) the batch's ``search_box_xywh_norm``.
    Returns:
        the weighted () loss and ``{"loss/ciou", "loss/l1", "iou"}`` (detached means). A prediction with a
        non-finite coordinate gives a NaN loss (still attached to the graph) instead of an exception, so that the
        trainer's NaN guard skips and reports the batch.
    """
    pred = pred_xyxy.float()
    target = target_xyxy_from_xywh(box_xywh_norm.float())
    if not torch.isfinite(pred).all():
        return non_finite_loss(pred, ("loss/ciou", "loss/l1", "iou"))
    ciou, iou = ciou_loss(pred, target)
    l1 = box_l1_loss(pred, target)
    loss = t.iou_weight * ciou + t.l1_weight * l1
    return loss, {"loss/ciou": ciou.detach(), "loss/l1": l1.detach(), "iou": iou.mean()}


def non_finite_loss(output: torch.Tensor, keys) -> tuple[torch.Tensor, Metrics]:
    """A NaN loss attached to ``output``'s graph (so that backward, and DDP's gradient all-reduce, still run) and
    NaN ``keys``: what a stage returns for a batch its networks turn into non-finite numbers, for the trainer's
    NaN guard to skip and report, where the loss functions would raise on the non-finite input."""
    nan = output.sum() * float("nan")
    return nan, {key: nan.detach() for key in keys}


def require_model(cfg: Config, name: str, stage: str) -> None:
    """``ConfigError`` naming ``model.name`` unless the config builds architecture ``name``."""
    if cfg.model.name != name:
        raise ConfigError(f"model.name: stage {stage!r} trains a {name} network, the config builds {cfg.model.name}")


def require_box_student(cfg: Config, stage: str) -> None:
    """``ConfigError`` unless the config builds a MixFormerV2 student without a score head: the box stages train the
    box head only, and a score head would get no gradient (the score stage adds it)."""
    require_model(cfg, "mixformerv2", stage)
    if cfg.model.score_head:
        raise ConfigError(f"model.score_head: stage {stage} trains the box head only; a score head would get no "
                          "gradient (set model.score_head: false; the score stage adds it)")


def build_initialised(cfg: Config, device: torch.device) -> nn.Module:
    """``build_model(cfg.model)`` on ``device``, initialised from ``train.init_checkpoint`` when set (MAE ViT
    weights, or a MixFormerV2/MixViT ``'net'`` checkpoint, minus ``train.init_drop_layers``); logs what was
    loaded. Without it the network keeps its random initialisation.

    ``train.pred_token_init_std`` > 0 draws the prediction tokens the file does not hold from N(0, std^2) instead
    of the official trunc-normal(0.02). Why: at 0.02 the four tokens are nearly equal and, after the first
    attention adds the (shared) search context, the side identity is a tiny part of each token; the student then
    long predicts one average box (measured on the quickstart: held-out IoU 0.22 after 600 steps at 0.02, 0.33 at
    1.0).
    """
    model = build_model(cfg.model)
    t = cfg.train
    loaded: list[str] = []
    if t.init_checkpoint:
        path = config_file("train.init_checkpoint", t.init_checkpoint)
        try:
            report = init_from_pretrained(model, path, drop_layers=t.init_drop_layers)
        except CheckpointError:
            raise
        except ValueError as err:  # remove_layers: a layer the file does not have
            raise ConfigError(f"train.init_drop_layers: {path}: {err}") from None
        if not report.loaded:
            raise ConfigError(f"train.init_checkpoint: {path}: no tensor of the file fits the model "
                              f"({report.summary()})")
        loaded = report.loaded
    else:
        logger.info("train.init_checkpoint not set: the %s network starts from random weights", cfg.model.name)
    tokens = getattr(getattr(model, "backbone", None), "reg_tokens", None)
    if t.pred_token_init_std > 0 and tokens is not None and "backbone.reg_tokens" not in loaded:
        with torch.no_grad():
            tokens.normal_(0.0, t.pred_token_init_std)
        logger.info("prediction tokens drawn from N(0, %g^2) (train.pred_token_init_std)", t.pred_token_init_std)
    return model.to(device)


def build_chained(cfg: Config, device: torch.device, stage: str, optional_prefix: str = "") -> nn.Module:
    """``build_model(cfg.model)`` on ``device`` loaded strictly from the previous stage's ``train.init_checkpoint``
    (a ``'net'`` file, minus ``train.init_drop_layers``, transformed on the keys of ``train.init_adapt``), for the
    stages that continue a trained MixFormerV2.

    Unlike ``build_initialised`` nothing is skipped: a file of another depth, bins, MLP ratio, input size or layout
    stops the run with one ``ChainError`` naming the disagreeing key, the stage config and the checkpoint
    (``train/chaining.py``). Keys under ``optional_prefix`` (e.g. ``"score_head."``) may be absent from the file;
    they keep their initial values (logged).
    """
    path = config_file("train.init_checkpoint", cfg.train.init_checkpoint)
    model = build_model(cfg.model)
    obj = read_checkpoint(path)
    state = unwrap_state_dict(obj, path)
    source = checkpoint_model_config(obj, state, cfg.model)
    mismatches = init_mismatches(cfg, source)
    if mismatches:
        raise ChainError(mismatches, path)
    if cfg.train.init_drop_layers:
        try:
            state = remove_layers(state, cfg.train.init_drop_layers)
        except ValueError as err:
            raise ConfigError(f"train.init_drop_layers: {path}: {err}") from None
    if cfg.train.init_adapt:
        try:
            state = adapt_state_dict(state, source, cfg.model, cfg.train.init_adapt)
        except (ValueError, KeyError) as err:
            raise ConfigError(f"train.init_adapt: {path}: {err}") from None
    absent = [k for k in model.state_dict() if optional_prefix and k.startswith(optional_prefix) and k not in state]
    if absent:
        logger.info("%s: no %s* tensors (%d): stage %s starts them from their initial values", path,
                    optional_prefix, len(absent), stage)
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in absent}}
    mismatch = layout_mismatch(model, state)
    if mismatch is not None:
        raise ChainError([mismatch], path)
    model.load_state_dict(state, strict=True)
    return model.to(device)
