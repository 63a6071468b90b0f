"""Stage 0, ``teacher``: the MixViT teacher (dense corner head) trained on ground truth.

The official release ships no teacher training (official_spec §7.1): it loads the MixFormer v1 checkpoint. Here the
teacher trains like the official box terms of every actor (§3.4): ``train.iou_weight`` x CIoU + ``train.l1_weight``
x L1 between the corner head's soft-argmax box and the search crop's ground truth, starting from MAE ViT weights
when ``train.init_checkpoint`` is set. Its ``model_final.pth.tar`` is what a stage-1 config names as
``train.teacher_checkpoint`` (with this config as ``train.teacher_config``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ...config import Config, TrainConfig
from ..stage import BaseStage, Metrics, register_stage
from .common import box_terms, build_initialised, network_inputs, require_model


class TeacherStage(BaseStage):
    """A MixViT network trained on the box terms; metrics ``loss/ciou``, ``loss/l1``, ``iou``."""

    def __init__(self, teacher_net: torch.nn.Module, train_cfg: TrainConfig):
        super().__init__(teacher_net)  # the network that trains is BaseStage's "student"
        self.train_cfg = train_cfg

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        out = self.student(*network_inputs(batch))
        return box_terms(out.box_xyxy_norm, batch["search_box_xywh_norm"], self.train_cfg)


@register_stage("teacher")
def build_teacher_stage(cfg: Config, device: torch.device) -> TeacherStage:
    require_model(cfg, "mixvit", "teacher")
    return TeacherStage(build_initialised(cfg, device), cfg.train)
