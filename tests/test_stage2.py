"""Stage 2 (deep_to_shallow): the layer fade, frozen faded layers, the loss terms, pruning at the end, chaining."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mixformerv2.config import ConfigError, load_config
from mixformerv2.models import build_model, read_checkpoint, save_checkpoint
from mixformerv2.train.losses import box_l1_loss, ciou_loss, target_xyxy_from_xywh
from mixformerv2.train.schedules import block_scales
from mixformerv2.train.stage import build_stage
from mixformerv2.train.stages import DeepToShallowStage, TeacherMismatchError

TINY = """\
model:
  name: mixformerv2
  head_type: mlp
  embed_dim: 32
  depth: {depth}
  num_heads: 2
  mlp_ratio: {mlp_ratio}
  patch_size: 8
  template_size: 32
  search_size: 64
  num_bins: {num_bins}
  score_head: {score_head}
  drop_path_rate: 0.0
train:
  stage: deep_to_shallow
  remove_epochs: 40
"""


def write_config(path: Path, depth: int = 4, mlp_ratio: float = 2.0, num_bins: int = 16,
                 score_head: bool = False) -> Path:
    path.write_text(TINY.format(depth=depth, mlp_ratio=mlp_ratio, num_bins=num_bins,
                                score_head=str(score_head).lower()))
    return path


def write_model(config: Path, path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(build_model(load_config(config).model), path)
    return path


@pytest.fixture()
def stage1(tmp_path) -> tuple[Path, Path]:
    """(config, checkpoint) of a random tiny 4-layer stage-1 student, teacher and start of stage 2."""
    config = write_config(tmp_path / "stage1.yaml")
    return config, write_model(config, tmp_path / "stage1.pth.tar")


def stage2_cfg(stage1, *overrides, student_config=None):
    config, checkpoint = stage1
    return load_config(student_config or config, [
        "train.stage=deep_to_shallow", f"train.init_checkpoint={checkpoint}", f"train.teacher_config={config}",
        f"train.teacher_checkpoint={checkpoint}", *overrides])


def fake_batch(batch: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"template_images": torch.randn(batch, 2, 3, 32, 32, generator=g),
            "search_image": torch.randn(batch, 3, 64, 64, generator=g),
            "search_box_xywh_norm": torch.tensor([[0.3, 0.35, 0.3, 0.25]]).repeat(batch, 1)}


def test_the_stage_fades_the_removed_layers_by_the_epoch_and_logs_the_rate(stage1):
    stage = build_stage(stage2_cfg(stage1, "train.remove_layers=[0,2]"), torch.device("cpu"))
    assert isinstance(stage, DeepToShallowStage)
    for epoch, rate in ((1, 0.99384), (19, 0.5), (39, 0.0), (45, 0.0)):
        stage.on_epoch_start(epoch)
        assert stage.rate == pytest.approx(rate, abs=1e-5)
        assert stage.scales == pytest.approx([rate, 1.0, rate, 1.0], abs=1e-5)
    stage.on_epoch_start(19)
    _, metrics = stage.loss(fake_batch(), 0)
    assert metrics["remove_rate"] == pytest.approx(0.5)
    # resumable through the epoch only: a fresh stage given the saved state runs at the same rate
    again = build_stage(stage2_cfg(stage1, "train.remove_layers=[0,2]"), torch.device("cpu"))
    assert again.rate == 1.0
    again.load_state_dict(stage.state_dict())
    assert again.rate == pytest.approx(0.5) and again.scales == stage.scales


def test_faded_layers_are_frozen_and_get_no_update(stage1):
    stage = build_stage(stage2_cfg(stage1, "train.remove_layers=[1]"), torch.device("cpu"))
    stage.on_epoch_start(5)
    blocks = stage.raw_student.backbone.blocks
    frozen = {id(p) for p in blocks[1].parameters()}
    trained = {id(p) for g in stage.param_groups(stage.train_cfg) for p in g["params"]}
    assert frozen and not frozen & trained and {id(p) for p in blocks[0].parameters()} <= trained
    before = {n: p.detach().clone() for n, p in stage.raw_student.named_parameters()}
    optimizer = torch.optim.AdamW(stage.param_groups(stage.train_cfg), lr=1e-2, weight_decay=0.1)
    stage.train()
    loss, _ = stage.loss(fake_batch(), 0)
    loss.backward()
    optimizer.step()
    after = dict(stage.raw_student.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("backbone.blocks.1."))
    assert not torch.equal(before["backbone.blocks.0.mlp.fc1.weight"], after["backbone.blocks.0.mlp.fc1.weight"])


def test_loss_terms_by_hand(stage1):
    # student = teacher and nothing fades: KL and feature MSE vanish, the loss is 2 CIoU + 5 L1 of the box
    cfg = stage2_cfg(stage1, "train.distill_layers_student=[1,3]", "train.distill_layers_teacher=[1,3]")
    stage = build_stage(cfg, torch.device("cpu"))
    stage.on_epoch_start(0)
    stage.eval()
    batch = fake_batch()
    loss, m = stage.loss(batch, 0)
    out = stage.raw_student(batch["template_images"][:, 0], [batch["template_images"][:, 1]], batch["search_image"])
    target = target_xyxy_from_xywh(batch["search_box_xywh_norm"])
    ciou, _ = ciou_loss(out.box_xyxy_norm, target)
    l1 = box_l1_loss(out.box_xyxy_norm, target)
    assert float(m["loss/kl"]) == pytest.approx(0.0, abs=1e-6) and float(m["loss/feat"]) == pytest.approx(0.0)
    assert float(loss.detach()) == pytest.approx(float((2 * ciou + 5 * l1).detach()), rel=1e-5)
    assert m["remove_rate"] == 1.0
    # layer 1 half faded: its output and every later one differ from the teacher's; weights 2, 5, 5, 0.2
    half = build_stage(stage2_cfg(stage1, "train.remove_layers=[1]", "train.distill_layers_student=[0,1]",
                                  "train.distill_layers_teacher=[0,1]"), torch.device("cpu"))
    half.on_epoch_start(19)
    half.eval()
    loss, m = half.loss(batch, 0)
    with torch.no_grad():
        scaled = half.raw_student(batch["template_images"][:, 0], [batch["template_images"][:, 1]],
                                  batch["search_image"], block_scales=[1, 0.5, 1, 1])
    teacher = half.teacher(batch["template_images"][:, 0], [batch["template_images"][:, 1]], batch["search_image"])
    mse_1 = float(((scaled.block_features[1] - teacher.block_features[1]) ** 2).mean())
    assert float(m["loss/feat"]) == pytest.approx(mse_1 / 2, rel=1e-5)  # block 0 is unchanged: mean of 0 and mse_1
    p = teacher.side_logits.softmax(-1)
    kl = float((p * (p.log() - scaled.side_logits.log_softmax(-1))).sum() / (2 * 4))
    assert float(m["loss/kl"]) == pytest.approx(kl, rel=1e-4) and kl > 0
    expected = 2 * float(m["loss/ciou"]) + 5 * float(m["loss/l1"]) + 5 * kl + 0.2 * mse_1 / 2
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4)


def test_finalize_prunes_the_faded_layers_into_a_shallow_model_with_the_same_outputs(stage1):
    stage = build_stage(stage2_cfg(stage1, "train.remove_layers=[0,2]"), torch.device("cpu"))
    stage.on_epoch_start(39)
    deep = stage.raw_student.eval()
    shallow = stage.finalize().eval()
    assert len(shallow.backbone.blocks) == 2
    batch = fake_batch()
    args = (batch["template_images"][:, 0], [batch["template_images"][:, 1]], batch["search_image"])
    with torch.no_grad():
        a = deep(*args, block_scales=block_scales(4, [0, 2], 0.0))
        b = shallow(*args)
    assert torch.allclose(a.side_logits, b.side_logits, atol=1e-5)
    assert torch.allclose(a.box_xyxy_norm, b.box_xyxy_norm, atol=1e-5)
    extra = stage.final_extra()
    assert extra["removed_layers"] == [0, 2] and extra["remove_rate"] == 0.0
    assert "depth: 2" in extra["config"] and "remove_layers: []" in extra["config"]


def test_finalize_keeps_the_deep_model_while_the_fade_has_not_ended(stage1, caplog):
    stage = build_stage(stage2_cfg(stage1, "train.remove_layers=[0]"), torch.device("cpu"))
    stage.on_epoch_start(38)
    assert len(stage.finalize().backbone.blocks) == 4
    assert "have not faded out" in caplog.text
    extra = stage.final_extra()
    assert extra["fade_layers"] == [0]
    assert extra["remove_rate"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("field, value, key", [("num_bins", 8, "model.num_bins"), ("depth", 3, "model.depth"),
                                               ("mlp_ratio", 1.0, "model.mlp_ratio")])
def test_a_student_checkpoint_that_does_not_chain_names_both_files_and_the_key(stage1, tmp_path, field, value, key):
    other = write_config(tmp_path / "other.yaml", **{field: value})
    wrong = write_model(other, tmp_path / "other.pth.tar")
    with pytest.raises(ConfigError) as err:
        build_stage(stage2_cfg(stage1, f"train.init_checkpoint={wrong}"), torch.device("cpu"))
    text = one_line(err)
    assert str(wrong) in text and "the stage config" in text and key in text


def test_a_teacher_of_other_bins_or_layout_names_both_files(stage1, tmp_path):
    other = write_config(tmp_path / "bins.yaml", num_bins=8)
    wrong = write_model(other, tmp_path / "bins.pth.tar")
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage2_cfg(stage1, f"train.teacher_config={other}", f"train.teacher_checkpoint={wrong}"),
                    torch.device("cpu"))
    text = one_line(err)
    assert str(other) in text and str(wrong) in text and "model.num_bins" in text
    # a config of the right bins whose checkpoint has another depth: the layout check names both files too
    deeper = write_model(write_config(tmp_path / "deep.yaml", depth=6), tmp_path / "deep.pth.tar")
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage2_cfg(stage1, f"train.teacher_checkpoint={deeper}"), torch.device("cpu"))
    text = one_line(err)
    assert str(deeper) in text and str(stage1[0]) in text and "model.depth" in text


class ListLoader:
    """The trainer's loader protocol over a fixed list of batches."""

    def __init__(self, batches):
        self.batches = batches

    def set_epoch(self, epoch, start_batch=0):
        pass

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_the_trainer_writes_the_pruned_model_and_what_was_removed(stage1, tmp_path):
    from mixformerv2.train.trainer import Trainer

    cfg = stage2_cfg(stage1, "train.remove_layers=[1,3]", "train.remove_epochs=2", "train.epochs=2",
                     "train.print_interval=1", "train.batch_size_per_process=2")
    trainer = Trainer(build_stage(cfg, torch.device("cpu")), cfg, ListLoader([fake_batch()]), tmp_path / "run",
                      progress=False)
    trainer.fit()
    saved = read_checkpoint(trainer.model_path)
    assert saved["removed_layers"] == [1, 3] and saved["remove_rate"] == 0.0 and "depth: 2" in saved["config"]
    assert {k.split(".")[2] for k in saved["net"] if k.startswith("backbone.blocks.")} == {"0", "1"}
    rows = (tmp_path / "run").rglob("*.jsonl")
    assert any('"remove_rate"' in p.read_text() for p in rows)


def test_a_teacher_layout_checkpoint_as_the_student_start_names_both_files(stage1, tmp_path):
    mixvit = tmp_path / "mixvit.yaml"
    mixvit.write_text(TINY.format(depth=4, mlp_ratio=2.0, num_bins=16, score_head="false")
                      .replace("name: mixformerv2", "name: mixvit").replace("head_type: mlp", "head_type: corner")
                      .replace("  num_bins: 16\n  score_head: false\n", "  head_channels: 16\n")
                      .replace("stage: deep_to_shallow", "stage: teacher"))
    wrong = write_model(mixvit, tmp_path / "mixvit.pth.tar")
    with pytest.raises(ConfigError) as err:
        build_stage(stage2_cfg(stage1, f"train.init_checkpoint={wrong}"), torch.device("cpu"))
    text = one_line(err)
    assert str(wrong) in text and "the stage config" in text and "model.name" in text
