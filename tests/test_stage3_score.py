"""Stage 3 (score): only the score head trains; BCE on the labels; precision, recall and AUROC on validation."""
from __future__ import annotations

import math

import pytest
import torch

from mixformerv2.config import ConfigError, load_config
from mixformerv2.train.stage import build_stage
from mixformerv2.train.stages import ScoreStage, auroc
from mixformerv2.train.stages.score import precision_recall
from test_stage2 import ListLoader, fake_batch, write_config, write_model


def test_auroc_by_hand():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of the 4 pairs are ordered right
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (0.5 + 1 + 1 + 1) / 4
    assert auroc(torch.tensor([0.5, 0.5, 0.2, 0.9]), torch.tensor([1.0, 0.0, 0.0, 1.0])) == pytest.approx(0.875)
    assert auroc(torch.tensor([3.0, -1.0]), torch.tensor([0.0, 1.0])) == 0.0
    assert math.isnan(auroc(torch.tensor([0.2, 0.3]), torch.tensor([1.0, 1.0])))


def test_precision_and_recall_by_hand():
    probs, labels = torch.tensor([0.9, 0.6, 0.4, 0.2, 0.7]), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    # predicted positive: 0.9, 0.6, 0.7 -> 2 hits of 3 predictions, 2 of 3 positives found
    assert precision_recall(probs, labels, 0.5) == pytest.approx((2 / 3, 2 / 3))
    assert precision_recall(probs, labels, 0.95) == (0.0, 0.0)


@pytest.fixture()
def score_cfg(tmp_path):
    """A score-stage config starting from a box-only (no score_head.*) checkpoint of the same network."""
    box_only = write_model(write_config(tmp_path / "box.yaml"), tmp_path / "box.pth.tar")
    config = write_config(tmp_path / "score.yaml", score_head=True)
    return load_config(config, ["train.stage=score", f"train.init_checkpoint={box_only}", "train.batch_size_per_process=4",
                                "train.print_interval=1"])


def labelled_batch():
    batch = fake_batch(4)
    batch["label"] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    return batch


def test_the_score_stage_trains_only_the_score_head(score_cfg):
    stage = build_stage(score_cfg, torch.device("cpu"))
    assert isinstance(stage, ScoreStage)
    net = stage.raw_student
    trained = {id(p) for g in stage.param_groups(score_cfg.train) for p in g["params"]}
    assert trained == {id(p) for p in net.score_head.parameters()}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.AdamW(stage.param_groups(score_cfg.train), lr=1e-2)
    stage.train()
    assert not net.training  # frozen parts stay in eval mode
    loss, metrics = stage.loss(labelled_batch(), 0)
    logits = net(*[labelled_batch()["template_images"][:, 0], [labelled_batch()["template_images"][:, 1]],
                   labelled_batch()["search_image"]]).score_logit
    p = logits.detach().sigmoid()
    labels = labelled_batch()["label"]
    by_hand = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert float(metrics["loss/score"]) == pytest.approx(float(by_hand), rel=1e-5)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in net.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(n.startswith("score_head.") for n in changed)


def test_validation_logs_precision_recall_and_auroc_of_the_whole_split(score_cfg, tmp_path):
    from mixformerv2.train.trainer import Trainer

    stage = build_stage(score_cfg, torch.device("cpu"))
    val = [labelled_batch(), labelled_batch()]
    trainer = Trainer(stage, score_cfg, ListLoader([labelled_batch()]), tmp_path / "run", val_loader=val,
                      progress=False)
    scalars = trainer.validate()
    net = stage.raw_student
    with torch.no_grad():
        b = labelled_batch()
        logits = net(b["template_images"][:, 0], [b["template_images"][:, 1]], b["search_image"]).score_logit
    both, labels = torch.cat([logits, logits]), torch.cat([b["label"], b["label"]])
    assert scalars["auroc"] == pytest.approx(auroc(both, labels))
    assert (scalars["precision"], scalars["recall"]) == pytest.approx(precision_recall(both.sigmoid(), labels, 0.5))
    assert "loss/score" in scalars and stage.validation_summary(lambda x: [x]) == {}  # cleared after use


def test_the_score_stage_needs_a_score_head(score_cfg):
    with pytest.raises(ConfigError, match="model.score_head"):
        build_stage(load_config_without_head(score_cfg), torch.device("cpu"))


def load_config_without_head(cfg):
    from dataclasses import replace

    return replace(cfg, model=replace(cfg.model, score_head=False))
