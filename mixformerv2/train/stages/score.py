"""Stage 3, ``score``: only the score head trains, to tell positive search crops from negative ones.

The student is a finished box model (``train.init_checkpoint``, loaded strictly except for the ``score_head.*``
tensors it may lack) built with ``model.score_head: true``; every parameter whose name does not contain ``score``
is frozen and the whole network stays in eval mode (no drop path in the frozen backbone). The batches come from the
sampler's score mode (``train.stage: score`` makes ``data.pipeline`` draw a positive search frame with probability
``data.positive_prob``, otherwise a negative one) and carry ``label`` (B,) 1.0 / 0.0.

Loss: ``train.score_weight`` x BCE-with-logits(score logit, label); metric ``loss/score``. Validation also logs,
over the whole held-out split, ``precision`` and ``recall`` of sigmoid(score) >= ``test.score_threshold`` (the
tracker's threshold) and the ``auroc`` of the score. (The official score stage crashes as shipped,
official_spec §7.)
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ...config import Config, ConfigError
from ..stage import BaseStage, Metrics, register_stage
from .common import build_chained, network_inputs, require_model

logger = logging.getLogger(__name__)


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` (N,) for binary ``labels`` (N,) (1 positive, 0 negative).

    Rank form (Mann-Whitney U): (sum of the positives' ranks - P (P + 1) / 2) / (P N), with tied scores sharing
    their average rank (a tie counts one half). NaN when either class is absent.
    """
    positive = labels.reshape(-1) > 0.5
    num_pos = int(positive.sum())
    num_neg = positive.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    ordered, order = scores.reshape(-1).double().sort()
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    counts = counts.double()
    mean_rank = counts.cumsum(0) - (counts - 1) / 2  # 1-based average rank of each group of equal scores
    rank_sum = mean_rank[group][positive[order]].sum().item()
    return (rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)


def precision_recall(probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> tuple[float, float]:
    """Precision and recall of ``probs >= threshold`` against binary ``labels``; 0 where the denominator is 0."""
    predicted, actual = probs >= threshold, labels > 0.5
    hits = int((predicted & actual).sum())
    return hits / max(int(predicted.sum()), 1), hits / max(int(actual.sum()), 1)


class ScoreStage(BaseStage):
    """A MixFormerV2 with a score head; only parameters named ``*score*`` train. Metrics ``loss/score``; on
    validation (``validation_summary``) ``precision``, ``recall``, ``auroc``."""

    def __init__(self, student: nn.Module, cfg: Config):
        super().__init__(student)
        self.weight, self.threshold = cfg.train.score_weight, cfg.test.score_threshold
        for name, param in self.raw_student.named_parameters():
            param.requires_grad_("score" in name)
        self.collecting = False
        self._logits: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def train(self, mode: bool = True) -> None:
        self.student.eval()  # the frozen backbone and box head keep eval behaviour; the score head has no dropout
        self.collecting = not mode

    def loss(self, batch: Mapping[str, Any], step: int) -> tuple[torch.Tensor, Metrics]:
        out = self.student(*network_inputs(batch))
        logits, labels = out.score_logit.float(), batch["label"].float().reshape(-1)
        bce = F.binary_cross_entropy_with_logits(logits, labels)
        if self.collecting:
            self._logits.append(logits.detach().cpu())
            self._labels.append(labels.detach().cpu())
        return self.weight * bce, {"loss/score": bce.detach()}

    def validation_summary(self, gather: Callable[[Any], list]) -> dict[str, float]:
        """Precision, recall and AUROC over every validation batch since the last call (of every rank: ``gather``
        maps this rank's (logits, labels) to the list of all ranks'); clears what was collected."""
        local = (torch.cat(self._logits) if self._logits else torch.zeros(0),
                 torch.cat(self._labels) if self._labels else torch.zeros(0))
        self._logits, self._labels = [], []
        parts = gather(local)
        logits = torch.cat([p[0] for p in parts])
        labels = torch.cat([p[1] for p in parts])
        if not logits.numel():
            return {}
        precision, recall = precision_recall(logits.sigmoid(), labels, self.threshold)
        return {"precision": precision, "recall": recall, "auroc": auroc(logits, labels)}


@register_stage("score")
def build_score_stage(cfg: Config, device: torch.device) -> ScoreStage:
    require_model(cfg, "mixformerv2", "score")
    if not cfg.model.score_head:
        raise ConfigError("model.score_head: stage score trains the score head; set model.score_head: true")
    return ScoreStage(build_chained(cfg, device, "score", optional_prefix="score_head."), cfg)
