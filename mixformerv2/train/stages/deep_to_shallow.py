"""Stage 2, ``deep_to_shallow``: a MixFormerV2 student loses layers while a frozen copy of its past self teaches it.

The student starts from the stage-1 model (``train.init_checkpoint``, loaded strictly); the teacher is that same
stage-1 model, named by ``train.teacher_config`` / ``train.teacher_checkpoint`` and frozen. It must be a MixFormerV2
with the student's bins, crops, normalisation and width (its side distributions and block features are the
targets); otherwise ``TeacherMismatchError`` names both files and the key.

The blocks in ``train.remove_layers`` fade out (official_spec §3.6): during 0-based epoch e their residual branches
are scaled by ``layer_fade(e, train.remove_epochs)`` = (1 + cos(pi min(e + 1, E) / E)) / 2, and they are frozen. The
rate is a pure function of the epoch: ``on_epoch_start`` sets it, the resume state keeps only the epoch it belongs
to, and every iteration logs it as the metric ``remove_rate``.

Loss: ``iou_weight`` x CIoU + ``l1_weight`` x L1 (ground truth) + ``kl_weight`` x KL(student side distributions ||
teacher side probabilities) + ``feat_weight`` x MSE(student block outputs at ``distill_layers_student``, teacher
block outputs at ``distill_layers_teacher``; left out when those lists are empty).

``finalize``: once the fade has ended (rate 0 — the faded blocks are then identities), the faded blocks are removed
and the others renumbered, so ``model_final.pth.tar`` holds the shallow network in the official layout, with
``removed_layers`` (indices in the deep model) and its config (depth reduced, no ``remove_layers``) in the file. If
the fade has not ended the deep model is kept, with ``fade_layers`` and ``remove_rate`` recorded for
``tools/prune.py``.

Stage 2b (fine-tuning the pruned student) is this stage with ``train.remove_layers: []``, ``train.init_checkpoint``
the pruned ``model_final.pth.tar`` and the same teacher (``distill_layers_student`` renumbered for the shallow
model).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn

from ...config import Config, dump_config
from ...models import build_model, remove_layers
from ...models.checkpoint import load_state_dict_strict
from ...utils.io import sha256_file
from ..losses import feature_mse, side_kl
from ..pruning import pruned_config, pruned_model_config
from ..schedules import block_scales, layer_fade
from ..stage import Metrics, register_stage
from .common import box_terms, build_chained, network_inputs, require_box_student
from .dense_to_sparse import DenseToSparseStage, load_teacher

logger = logging.getLogger(__name__)

_SAME_KEYS = ("name", "num_bins", "template_size", "search_size", "patch_size", "embed_dim", "image_mean", "image_std")


def stage2_teacher_problems(student: Config, teacher: Config) -> list[str]:
    """Why ``teacher`` cannot teach this deep-to-shallow student: another architecture, bins, crops or width, or
    ``train.distill_layers_teacher`` naming a block it does not have."""
    problems = [f"model.{key} {getattr(teacher.model, key)!r} differs from the student's "
                f"{getattr(student.model, key)!r}" for key in _SAME_KEYS
                if getattr(teacher.model, key) != getattr(student.model, key)]
    too_deep = [i for i in student.train.distill_layers_teacher if i >= teacher.model.depth]
    if too_deep:
        problems.append(f"train.distill_layers_teacher {too_deep[0]} is beyond the teacher's model.depth "
                        f"{teacher.model.depth}")
    return problems


class DeepToShallowStage(DenseToSparseStage):
    """Student with fading, frozen ``remove_layers`` + frozen MixFormerV2 teacher. Metrics: ``loss/ciou``,
    ``loss/l1``, ``loss/kl``, ``loss/feat`` (with distill layers), ``iou``, ``remove_rate``."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: Config, teacher_sha256: str = ""):
        super().__init__(student, teacher, cfg.train, teacher_sha256)
        self.cfg = cfg
        self.remove = tuple(sorted(set(cfg.train.remove_layers)))
        for i in self.remove:
            self.raw_student.backbone.blocks[i].requires_grad_(False)
        self.fade_epoch = -1  # the epoch the current rate belongs to; -1: before training
        self.rate = 1.0
        self.scales = block_scales(cfg.model.depth, self.remove, self.rate)

    def on_epoch_start(self, epoch: int) -> None:
        self.fade_epoch = epoch
        self.rate = layer_fade(epoch, self.train_cfg.remove_epochs) if self.remove else 1.0
        self.scales = block_scales(self.cfg.model.depth, self.remove, self.rate)
        if self.remove:
            logger.info("epoch %d: layers %s run at residual scale %.5f", epoch, list(self.remove), self.rate)

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        inputs = network_inputs(batch)
        out = self.student(*inputs, block_scales=self.scales)
        with torch.no_grad():
            taught = self.teacher(*inputs)
            target = taught.side_logits.float().softmax(dim=-1)  # (B, 4, K)
        loss, metrics = box_terms(out.box_xyxy_norm, batch["search_box_xywh_norm"], self.train_cfg)
        t = self.train_cfg
        kl = side_kl(out.side_logits.float(), target)
        loss = loss + t.kl_weight * kl
        metrics.update({"loss/kl": kl.detach(), "remove_rate": self.rate})
        if t.distill_layers_student:
            feat = feature_mse([f.float() for f in out.block_features], [f.float() for f in taught.block_features],
                               t.distill_layers_student, t.distill_layers_teacher)
            loss = loss + t.feat_weight * feat
            metrics["loss/feat"] = feat.detach()
        return loss, metrics

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fade_epoch": self.fade_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "fade_epoch"})
        if state.get("fade_epoch", -1) >= 0:
            self.on_epoch_start(int(state["fade_epoch"]))

    @property
    def fade_ended(self) -> bool:
        return bool(self.remove) and self.rate == 0.0

    def finalize(self) -> nn.Module:
        if not self.remove:
            return self.raw_student
        if not self.fade_ended:
            logger.warning("layers %s have not faded out (rate %.5f after epoch %d of train.remove_epochs %d): the "
                           "final model keeps all %d layers; prune later with tools/prune.py", list(self.remove),
                           self.rate, self.fade_epoch, self.train_cfg.remove_epochs, self.cfg.model.depth)
            return self.raw_student
        shallow = build_model(pruned_model_config(self.cfg.model, self.remove))
        state = remove_layers(self.raw_student.state_dict(), self.remove)
        load_state_dict_strict(shallow, state, f"the stage-2 student without layers {list(self.remove)}")
        logger.info("layers %s faded out and were removed: the final model has %d layers", list(self.remove),
                    self.cfg.model.depth - len(self.remove))
        return shallow.to(next(self.raw_student.parameters()).device)

    def final_extra(self) -> dict[str, Any]:
        """Fields stored with the final model: what was removed (pruned) or what is fading and how far."""
        if self.fade_ended:
            shallow = pruned_config(self.cfg, self.remove)
            return {"removed_layers": list(self.remove), "remove_rate": 0.0, "config": dump_config(shallow)}
        return {"fade_layers": list(self.remove), "remove_rate": self.rate}


@register_stage("deep_to_shallow")
def build_deep_to_shallow_stage(cfg: Config, device: torch.device) -> DeepToShallowStage:
    require_box_student(cfg, "deep_to_shallow")
    teacher, checkpoint_path = load_teacher(cfg, device, stage2_teacher_problems)
    student = build_chained(cfg, device, "deep_to_shallow")
    return DeepToShallowStage(student, teacher, cfg, sha256_file(checkpoint_path))
