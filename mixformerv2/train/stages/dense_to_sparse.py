"""Stage 1, ``dense_to_sparse``: the MixFormerV2 student learns from ground truth and from a frozen MixViT teacher.

Both networks see the same crops (official_spec §3.4, ``MixFormerDistillStage1Actor``). The loss is
``train.iou_weight`` x CIoU + ``train.l1_weight`` x L1 on the student's box, plus ``train.kl_weight`` x
KL(student side distributions || teacher corner marginals): the teacher's top-left / bottom-right corner maps are
summed into left, right, top and bottom distributions, reordered to the student's token order and, when the
student has another number of bins than the teacher's map side, resampled onto the student's bins
(``corner_side_targets``) instead of the official assertion. Logged: each term, ``iou`` and ``teacher_iou``.

The stage config names the teacher as ``train.teacher_config`` (a MixViT YAML) and ``train.teacher_checkpoint``
(its weights, e.g. a teacher stage's ``model_final.pth.tar`` or the MixFormer v1 ``mixformer_vit_base_online.pth.
tar``), both relative to the working directory. At start they must fit: the checkpoint loads strictly into the
network the teacher config describes (the v1 file's unused ``score_branch.*`` keys aside), and the teacher reads the
student's crops (same template and search sizes, same normalisation); otherwise ``TeacherMismatchError`` says why
on one line naming both files. The student starts from ``train.init_checkpoint`` (MAE, or a MixFormerV2 ``'net'``).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ...config import Config, ConfigError, ModelConfig, TrainConfig, load_config
from ...models import build_model, read_checkpoint, unwrap_state_dict
from ...models.checkpoint import CheckpointError, load_state_dict_strict
from ...utils.io import sha256_file
from ..chaining import adapt_state_dict
from ..losses import ciou_loss, corner_side_targets, side_kl, target_xyxy_from_xywh
from ..stage import BaseStage, Metrics, register_stage
from .common import (box_terms, build_initialised, config_file, network_inputs, non_finite_loss,
                     require_box_student)

logger = logging.getLogger(__name__)

# The MixFormer v1 teacher file also holds its score-prediction module; the MixViT teacher has none (official_spec
# §5.4: the official code loads it with strict=False). Only keys under this prefix are let through unloaded.
V1_SCORE_PREFIX = "score_branch."
_SAME_INPUT_KEYS = ("template_size", "search_size", "image_mean", "image_std")


class TeacherMismatchError(CheckpointError):
    """The teacher named by ``train.teacher_config`` / ``train.teacher_checkpoint`` cannot serve this student; the
    one-line message names both files."""


def teacher_problems(student: ModelConfig, teacher: ModelConfig) -> list[str]:
    """Why a teacher config cannot distil into this student: not a corner-head MixViT, or other crops."""
    problems = []
    if teacher.name != "mixvit":
        problems.append(f"model.name is {teacher.name!r}; stage dense_to_sparse needs a mixvit teacher (dense corner "
                        "head)")
    for key in _SAME_INPUT_KEYS:
        mine, theirs = getattr(student, key), getattr(teacher, key)
        if mine != theirs:
            problems.append(f"model.{key} {theirs} differs from the student's {mine} (both networks read the same "
                            "crops)")
    return problems


def teacher_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a teacher file without the MixFormer v1 score branch (logged when present)."""
    state = unwrap_state_dict(read_checkpoint(path), path)
    dropped = [k for k in state if k.startswith(V1_SCORE_PREFIX)]
    if dropped:
        logger.info("%s: %d tensors of the MixFormer v1 score branch (%s*) are not part of the teacher, not loaded",
                    path, len(dropped), V1_SCORE_PREFIX)
    return {k: v for k, v in state.items() if not k.startswith(V1_SCORE_PREFIX)}


def load_teacher(cfg: Config, device: torch.device,
                 problems_of: Callable[[Config, Config], list[str]] | None = None) -> tuple[nn.Module, Path]:
    """The frozen teacher of ``cfg.train`` (eval mode, on ``device``) and its checkpoint path.

    ``problems_of(student cfg, teacher cfg)`` lists why the teacher cannot serve this stage (default: the stage-1
    check, ``teacher_problems`` of both model configs). Raises ``ConfigError`` naming the key for a missing file,
    ``TeacherMismatchError`` naming both files when the teacher config is invalid, does not fit the student, or its
    checkpoint does not load strictly. With ``train.teacher_adapt`` the teacher is built with the student's values
    of those keys (input sizes) and its checkpoint's position embeddings are resampled to them
    (``chaining.adapt_state_dict``)."""
    config_path = config_file("train.teacher_config", cfg.train.teacher_config)
    checkpoint_path = config_file("train.teacher_checkpoint", cfg.train.teacher_checkpoint)
    pair = f"train.teacher_config {config_path} / train.teacher_checkpoint {checkpoint_path}"
    try:
        teacher_cfg = load_config(config_path)
    except ConfigError as err:
        raise TeacherMismatchError(f"{pair}: the teacher config is invalid: {err}") from None
    written = teacher_cfg.model
    adapt = cfg.train.teacher_adapt
    if adapt:  # the teacher reads the student's crops: its position embeddings are resampled below
        teacher_cfg = replace(teacher_cfg, model=replace(written, **{k: getattr(cfg.model, k) for k in adapt}))
    problems = (problems_of(cfg, teacher_cfg) if problems_of is not None
                else teacher_problems(cfg.model, teacher_cfg.model))
    if problems:
        raise TeacherMismatchError(f"{pair}: the teacher does not fit the student: {'; '.join(problems)}")
    teacher = build_model(teacher_cfg.model)
    state, source = teacher_state_dict(checkpoint_path), str(checkpoint_path)
    if adapt:
        try:
            state = adapt_state_dict(state, written, teacher_cfg.model, adapt)
        except (ValueError, KeyError) as err:
            raise TeacherMismatchError(f"{pair}: train.teacher_adapt: {err}") from None
        source += f" with train.teacher_adapt {list(adapt)}"
    try:
        load_state_dict_strict(teacher, state, source)
    except CheckpointError as err:
        raise TeacherMismatchError(f"{pair}: the checkpoint does not fit the teacher config: {err}") from None
    logger.info("teacher: %s, weights %s", config_path, checkpoint_path)
    return teacher.to(device).eval().requires_grad_(False), checkpoint_path


class DenseToSparseStage(BaseStage):
    """Student (trains) + frozen MixViT teacher. Metrics: ``loss/ciou``, ``loss/l1``, ``loss/kl``, ``iou``,
    ``teacher_iou``. The resume state records the teacher file's SHA-256, so a run does not resume against another
    teacher saved under the same name."""

    def __init__(self, student: nn.Module, teacher: nn.Module, train_cfg: TrainConfig, teacher_sha256: str = ""):
        super().__init__(student, teacher)
        self.train_cfg, self.teacher_sha256 = train_cfg, teacher_sha256
        self._bins_logged = False

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        inputs = network_inputs(batch)
        out = self.student(*inputs)
        with torch.no_grad():
            dense = self.teacher(*inputs)
        corner_probs = dense.corner_logits.float().softmax(dim=-1)  # (B, 2, F*F)
        if not (torch.isfinite(corner_probs).all() and torch.isfinite(dense.box_xyxy_norm).all()):
            return non_finite_loss(out.side_logits, ("loss/ciou", "loss/l1", "loss/kl", "iou", "teacher_iou"))
        num_bins = out.side_logits.shape[-1]
        target = corner_side_targets(corner_probs[:, 0], corner_probs[:, 1], num_bins)  # (B, 4, K)
        _, teacher_iou = ciou_loss(dense.box_xyxy_norm.float(),
                                   target_xyxy_from_xywh(batch["search_box_xywh_norm"].float()))
        self._log_bins_once(corner_probs.shape[-1], num_bins)
        loss, metrics = box_terms(out.box_xyxy_norm, batch["search_box_xywh_norm"], self.train_cfg)
        kl = side_kl(out.side_logits.float(), target)
        metrics.update({"loss/kl": kl.detach(), "teacher_iou": teacher_iou.mean()})
        return loss + self.train_cfg.kl_weight * kl, metrics

    def _log_bins_once(self, map_cells: int, num_bins: int) -> None:
        if self._bins_logged:
            return
        self._bins_logged = True
        side = round(map_cells ** 0.5)
        if side != num_bins:
            logger.info("the teacher's %dx%d corner maps give %d-bin side distributions, resampled onto the "
                        "student's %d bins", side, side, side, num_bins)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "teacher_sha256": self.teacher_sha256}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("teacher_sha256", "")
        if saved and self.teacher_sha256 and saved != self.teacher_sha256:
            raise CheckpointError(f"the run was trained against a teacher checkpoint with SHA-256 {saved[:12]}..., "
                                  f"train.teacher_checkpoint now has {self.teacher_sha256[:12]}... (another file "
                                  "under the same name?)")
        super().load_state_dict(state)


@register_stage("dense_to_sparse")
def build_dense_to_sparse_stage(cfg: Config, device: torch.device) -> DenseToSparseStage:
    require_box_student(cfg, "dense_to_sparse")
    teacher, checkpoint_path = load_teacher(cfg, device)
    student = build_initialised(cfg, device)
    return DenseToSparseStage(student, teacher, cfg.train, sha256_file(checkpoint_path))
