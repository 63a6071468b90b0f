"""Training stages (issue #9): the shipped quickstart configs learn on synthetic videos (teacher, then stage 1 from
that teacher), the stages' set-up errors are one line naming the files, and the shipped configs are valid.

The learning tests share one module-scoped run of each stage on a small synthetic benchmark (generated once) with
the quickstart configs, overridden only in data roots, samples per epoch and epochs. Held-out samples come from
sequences the runs never train on (LaSOT test and GOT-10k val); their sampling is fixed (epoch 0, seed 42), so
every number below is deterministic on a given machine.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mixformerv2.config import ConfigError, load_config
from mixformerv2.data.synthetic import PRESETS, generate_all
from mixformerv2.models import build_model, load_checkpoint, save_checkpoint
from mixformerv2.train.distributed import DistInfo
from mixformerv2.train.losses import ciou_loss, target_xyxy_from_xywh
from mixformerv2.train.pipeline import is_pipeline_file
from mixformerv2.train.run import build_loaders, run_training, seed_all
from mixformerv2.train.stage import build_stage
from mixformerv2.train.stages import DenseToSparseStage, TeacherMismatchError

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart"
PAPER = REPO / "configs" / "paper"
HELD_OUT_SAMPLES = 192


# -- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, two spinning OpenMP threads made these runs up to 7x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A small synthetic benchmark: LaSOT 5 classes x (3 train + 1 test) videos, GOT-10k 6 train + 3 val videos,
    40 frames of 160x120 each (the quickstart preset's scenes at a quarter of the pixels)."""
    root = tmp_path_factory.mktemp("synthetic")
    quick = PRESETS["quickstart"]
    preset = replace(quick, scene=replace(quick.scene, width=160, height=120), lasot_train_per_class=3,
                     lasot_frames=40, got10k_counts={"train": 6, "val": 3}, got10k_frames=40)
    generate_all(root, preset, formats=("lasot", "got10k"), workers=2)
    return root


def quickstart_config(name: str, root: Path, *overrides: str):
    """A shipped quickstart config on the test's benchmark, ``samples`` per epoch for ``epochs`` epochs."""
    return load_config(QUICKSTART / f"{name}.yaml", [
        f"data.roots={{lasot: {root / 'lasot'}, got10k: {root / 'got10k'}}}", "data.num_workers=1",
        f"data.val_samples_per_epoch={HELD_OUT_SAMPLES}", "train.val_interval=1000", "train.print_interval=10",
        *overrides])


def held_out(stage, cfg) -> dict[str, float]:
    """Mean loss terms and IoU of ``stage`` (eval mode, no gradient) over the config's held-out samples."""
    _, loader = build_loaders(cfg, DistInfo())
    stage.eval()
    sums, count = {}, 0
    with torch.no_grad():
        for batch in loader:
            loss, metrics = stage.loss(batch, 0)
            for key, value in {"loss": loss, **metrics}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(batch["index"])
            count += len(batch["index"])
    assert count == HELD_OUT_SAMPLES
    return {key: value / count for key, value in sums.items()}


def constant_box_iou(cfg) -> float:
    """Held-out IoU of the best blind guess: the mean training box (of 512 training samples), always."""
    train_cfg = replace(cfg, data=replace(cfg.data, samples_per_epoch=512))
    train, val = build_loaders(train_cfg, DistInfo())
    train.set_epoch(0)
    mean_box = torch.cat([target_xyxy_from_xywh(b["search_box_xywh_norm"]) for b in train]).mean(dim=0)
    targets = torch.cat([target_xyxy_from_xywh(b["search_box_xywh_norm"]) for b in val])
    return float(ciou_loss(mean_box.expand_as(targets).contiguous(), targets)[1].mean())


def untrained(cfg) -> dict[str, float]:
    """Held-out numbers of the stage as ``run_training`` builds it before its first step (same seed)."""
    seed_all(cfg.train.seed)
    return held_out(build_stage(cfg, torch.device("cpu")), cfg)


def train_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["split"] == "train"]


def train_stage(cfg, output: Path) -> dict:
    before = untrained(cfg)
    trainer = run_training(cfg, output, resume="none", device="cpu", progress=False)
    return {"before": before, "after": held_out(trainer.stage, cfg), "rows": train_rows(output),
            "model": trainer.model_path, "cfg": cfg}


@pytest.fixture(scope="module")
def teacher_run(synthetic, tmp_path_factory) -> dict:
    cfg = quickstart_config("teacher", synthetic, "data.samples_per_epoch=1920", "train.epochs=2")
    return train_stage(cfg, tmp_path_factory.mktemp("teacher_run"))


@pytest.fixture(scope="module")
def stage1_run(synthetic, teacher_run, tmp_path_factory) -> dict:
    cfg = quickstart_config("stage1", synthetic, "data.samples_per_epoch=2048", "train.epochs=1",
                            "train.batch_size_per_process=16", f"train.teacher_checkpoint={teacher_run['model']}",
                            f"train.init_checkpoint={teacher_run['model']}")
    return train_stage(cfg, tmp_path_factory.mktemp("stage1_run"))


# -- learning -------------------------------------------------------------------------------------------------------


def test_quickstart_teacher_learns_to_localise_held_out_targets(teacher_run):
    """240 iterations (about a minute): measured here, held-out IoU 0 -> 0.30 while always guessing the mean box
    scores 0.15, and the training loss of the first and last 10 iterations 2.9 -> 1.8."""
    rows, before, after = teacher_run["rows"], teacher_run["before"], teacher_run["after"]
    assert rows[-1]["step"] == 240
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5  # 2 CIoU + 5 L1 of the training batches
    assert before["iou"] < 0.02  # random corner maps: degenerate boxes
    assert after["iou"] > before["iou"] + 0.2
    assert after["iou"] > 1.5 * constant_box_iou(teacher_run["cfg"])  # it looks at the images, not a size prior
    assert after["loss"] < before["loss"] - 0.8


def test_quickstart_stage1_learns_from_the_trained_teacher(stage1_run):
    """128 iterations from the teacher above: measured here, held-out KL 1.66 -> 0.79 and IoU 0 -> 0.16.

    In this budget the tiny student learns the distribution of the teacher's side marginals (its boxes get their
    width and place), not yet to follow the target: its held-out IoU is that of always guessing the mean box
    (0.15), which is why, unlike the teacher's, it is not compared with that baseline."""
    rows, before, after = stage1_run["rows"], stage1_run["before"], stage1_run["after"]
    assert rows[-1]["step"] == 128
    assert rows[-1]["loss/kl"] < 0.8 * rows[0]["loss/kl"]
    assert after["loss/kl"] < 0.7 * before["loss/kl"]
    assert before["iou"] < 0.02  # four nearly identical prediction tokens: zero-width boxes
    assert after["iou"] > before["iou"] + 0.1
    assert after["loss"] < before["loss"] - 3.0
    assert after["teacher_iou"] == pytest.approx(before["teacher_iou"])  # the frozen teacher did not move
    # the final model is the student in the official layout, loading strictly as tools/test.py loads it
    model = build_model(stage1_run["cfg"].model)
    meta = load_checkpoint(model, stage1_run["model"])
    assert meta["iteration"] == 128 and "stage: dense_to_sparse" in meta["config"]


# -- set-up of the stages: fitting teachers, bins, initialisation -----------------------------------------------------


def fake_batch(cfg, batch: int = 2) -> dict:
    """Random crops of the config's sizes and plausible normalised target boxes (xywh)."""
    g = torch.Generator().manual_seed(0)
    t, s = cfg.model.template_size, cfg.model.search_size
    return {"template_images": torch.randn(batch, cfg.data.num_templates, 3, t, t, generator=g),
            "search_image": torch.randn(batch, 3, s, s, generator=g),
            "search_box_xywh_norm": torch.tensor([[0.3, 0.35, 0.3, 0.25]]).repeat(batch, 1)}


@pytest.fixture()
def teacher_file(tmp_path) -> Path:
    """A checkpoint of the quickstart teacher network (random weights), in the official layout."""
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth.tar"
    save_checkpoint(build_model(load_config(QUICKSTART / "teacher.yaml").model), path)
    return path


def stage1_config(teacher_checkpoint, *overrides, teacher_config=QUICKSTART / "teacher.yaml"):
    return load_config(QUICKSTART / "stage1.yaml", [f"train.teacher_config={teacher_config}",
                                                    f"train.teacher_checkpoint={teacher_checkpoint}",
                                                    f"train.init_checkpoint={teacher_checkpoint}", *overrides])


def test_stage1_resamples_the_teacher_maps_onto_other_student_bins_and_trains_only_the_student(teacher_file, caplog):
    cfg = stage1_config(teacher_file, "model.num_bins=24")
    stage = build_stage(cfg, torch.device("cpu"))
    assert isinstance(stage, DenseToSparseStage)
    with caplog.at_level(logging.INFO, logger="mixformerv2.train.stages.dense_to_sparse"):
        loss, metrics = stage.loss(fake_batch(cfg), 0)
    assert "32x32 corner maps give 32-bin side distributions, resampled onto the student's 24 bins" in caplog.text
    assert set(metrics) == {"loss/ciou", "loss/l1", "loss/kl", "iou", "teacher_iou"}
    t = cfg.train
    expected = t.iou_weight * metrics["loss/ciou"] + t.l1_weight * metrics["loss/l1"] + t.kl_weight * metrics["loss/kl"]
    assert torch.isfinite(loss) and loss.item() == pytest.approx(float(expected), rel=1e-6)
    trained = {id(p) for group in stage.param_groups(cfg.train) for p in group["params"]}
    assert trained == {id(p) for p in stage.raw_student.parameters() if p.requires_grad}
    assert not trained & {id(p) for p in stage.teacher.parameters()}
    assert not stage.teacher.training and all(not p.requires_grad for p in stage.teacher.parameters())


def test_a_v1_teacher_file_loads_without_its_score_branch_but_nothing_else_extra(teacher_file, tmp_path):
    state = torch.load(teacher_file, weights_only=True)
    v1 = tmp_path / "v1.pth.tar"
    torch.save({"net": {**state["net"], "score_branch.score_token": torch.zeros(1, 1, 64)}}, v1)
    build_stage(stage1_config(v1), torch.device("cpu"))
    other = tmp_path / "other.pth.tar"
    torch.save({"net": {**state["net"], "extra_head.weight": torch.zeros(2)}}, other)
    with pytest.raises(TeacherMismatchError, match=r"unexpected: extra_head\.weight"):
        build_stage(stage1_config(other), torch.device("cpu"))


@pytest.mark.parametrize("config", ["teacher", "stage1"])
def test_a_batch_the_networks_turn_into_nan_gives_a_nan_loss_for_the_guard_not_an_exception(teacher_file, config):
    """ciou_loss and side_kl raise on non-finite input; the stages hand the trainer's NaN guard a NaN loss instead
    (it skips the step and names the batch's sequences), with a graph to run backward on."""
    cfg = stage1_config(teacher_file) if config == "stage1" else load_config(QUICKSTART / "teacher.yaml")
    stage = build_stage(cfg, torch.device("cpu"))
    batch = fake_batch(cfg)
    batch["search_image"][1, :, 5, 5] = float("nan")
    loss, metrics = stage.loss(batch, 0)
    assert torch.isnan(loss) and all(torch.isnan(torch.as_tensor(v)) for v in metrics.values())
    loss.backward()


def mae_file(path: Path, model) -> Path:
    """``model``'s backbone as an MAE file: weights under 'model', keys without 'backbone.'."""
    state = {k.removeprefix("backbone."): v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": state}, path)
    return path


def test_teacher_stage_starts_from_mae_weights_when_given(tmp_path):
    cfg = load_config(QUICKSTART / "teacher.yaml")
    torch.manual_seed(1)
    source = build_model(cfg.model)
    path = mae_file(tmp_path / "mae.pth", source)
    stage = build_stage(replace(cfg, train=replace(cfg.train, init_checkpoint=str(path))), torch.device("cpu"))
    net = stage.raw_student.state_dict()
    for key in ("backbone.patch_embed.proj.weight", "backbone.blocks.3.mlp.fc2.weight"):
        assert torch.equal(net[key], source.state_dict()[key])
    assert not torch.equal(net["box_head.conv1_tl.0.weight"], source.state_dict()["box_head.conv1_tl.0.weight"])
    torch.save({"model": {"unrelated.weight": torch.zeros(3)}}, tmp_path / "unrelated.pth")
    with pytest.raises(ConfigError, match=r"train\.init_checkpoint: .*unrelated\.pth: no tensor of the file fits"):
        build_stage(replace(cfg, train=replace(cfg.train, init_checkpoint=str(tmp_path / "unrelated.pth"))),
                    torch.device("cpu"))


def test_resuming_against_another_teacher_file_is_refused(teacher_file):
    stage = build_stage(stage1_config(teacher_file), torch.device("cpu"))
    state = stage.state_dict()
    assert len(state["teacher_sha256"]) == 64
    stage.load_state_dict(state)
    with pytest.raises(ValueError, match="another file under the same name"):
        stage.load_state_dict({**state, "teacher_sha256": "0" * 64})


# -- bad input: one line naming the files or the key ------------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_teacher_checkpoint_of_the_wrong_layout_names_both_files(teacher_file, tmp_path):
    cfg = stage1_config(teacher_file)
    student_file = tmp_path / "student.pth.tar"
    save_checkpoint(build_model(cfg.model), student_file)
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage1_config(student_file), torch.device("cpu"))
    message = one_line(err)
    assert str(QUICKSTART / "teacher.yaml") in message and str(student_file) in message
    assert "model.name: config says 'mixvit', checkpoint has 'mixformerv2'" in message
    shallow = tmp_path / "shallow.pth.tar"
    save_checkpoint(build_model(replace(load_config(QUICKSTART / "teacher.yaml").model, depth=2)), shallow)
    with pytest.raises(TeacherMismatchError, match=r"model\.depth: config says 4, checkpoint has 2"):
        build_stage(stage1_config(shallow), torch.device("cpu"))


def write_teacher_config(path: Path, **model) -> Path:
    """The quickstart teacher config, resolved into one file, with ``model`` fields replaced."""
    from mixformerv2.config import dump_config

    cfg = load_config(QUICKSTART / "teacher.yaml")
    path.write_text(dump_config(replace(cfg, model=replace(cfg.model, **model))))
    return path


def test_a_teacher_that_reads_other_crops_or_config_keys_names_both_files(teacher_file, tmp_path):
    other = write_teacher_config(tmp_path / "big_teacher.yaml", search_size=128)
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage1_config(teacher_file, teacher_config=other), torch.device("cpu"))
    message = one_line(err)
    assert str(other) in message and str(teacher_file) in message
    assert "model.search_size 128 differs from the student's 64 (both networks read the same crops)" in message
    typo = tmp_path / "typo_teacher.yaml"
    typo.write_text((QUICKSTART / "teacher.yaml").read_text().replace("head_channels:", "head_chanels:")
                    .replace("_base_: base.yaml", f"_base_: {QUICKSTART / 'base.yaml'}"))
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage1_config(teacher_file, teacher_config=typo), torch.device("cpu"))
    assert "model.head_chanels: unknown key" in one_line(err) and str(typo) in str(err.value)


@pytest.mark.parametrize("key", ["train.teacher_config", "train.teacher_checkpoint", "train.init_checkpoint"])
def test_a_stage_config_naming_a_missing_file_names_the_key_and_the_folder(teacher_file, tmp_path, key):
    cfg = stage1_config(teacher_file, f"{key}=missing/nothing_here.pth")
    with pytest.raises(ConfigError) as err:
        build_stage(cfg, torch.device("cpu"))
    assert one_line(err) == (f"{key}: missing/nothing_here.pth: file not found (relative paths are read from the "
                             f"working directory {Path.cwd()})")


def test_relative_paths_are_read_from_the_working_directory_not_the_config_folder(teacher_file, tmp_path,
                                                                                 monkeypatch):
    (tmp_path / "runs").mkdir()
    teacher_file.rename(tmp_path / "runs" / "teacher.pth.tar")
    write_teacher_config(tmp_path / "teacher.yaml")
    (tmp_path / "configs").mkdir()
    stage_yaml = tmp_path / "configs" / "stage1.yaml"
    stage_yaml.write_text(f"_base_: {QUICKSTART / 'stage1.yaml'}\n"
                          "train: {teacher_config: teacher.yaml, teacher_checkpoint: runs/teacher.pth.tar, "
                          "init_checkpoint: runs/teacher.pth.tar}\n")
    monkeypatch.chdir(tmp_path)
    assert isinstance(build_stage(load_config(stage_yaml), torch.device("cpu")), DenseToSparseStage)
    monkeypatch.chdir(tmp_path / "configs")  # the YAML's own folder: the same names now point nowhere
    with pytest.raises(ConfigError, match=r"^train\.teacher_config: teacher\.yaml: file not found"):
        build_stage(load_config(stage_yaml), torch.device("cpu"))


@pytest.mark.parametrize("config, overrides, message", [
    ("stage1", ["model.score_head=true"], "model.score_head: stage dense_to_sparse trains the box head only"),
    ("teacher", ["model.name=mixformerv2", "model.head_type=mlp"],
     "model.name: stage 'teacher' trains a mixvit network, the config builds mixformerv2"),
    ("stage1", ["model.name=mixvit", "model.head_type=corner_up"],
     "model.name: stage 'dense_to_sparse' trains a mixformerv2 network"),
])
def test_a_stage_refuses_a_network_it_cannot_train(teacher_file, config, overrides, message):
    if config == "stage1":
        overrides = [f"train.teacher_checkpoint={teacher_file}", f"train.init_checkpoint={teacher_file}", *overrides]
    cfg = load_config(QUICKSTART / f"{config}.yaml", overrides)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build_stage(cfg, torch.device("cpu"))


def test_train_tool_prints_a_teacher_mismatch_as_one_line(teacher_file, tmp_path, caplog, capsys):
    shallow = tmp_path / "shallow.pth.tar"
    save_checkpoint(build_model(replace(load_config(QUICKSTART / "teacher.yaml").model, depth=2)), shallow)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with caplog.at_level(logging.ERROR):
            code = train_tool().main([
                "--config", str(QUICKSTART / "stage1.yaml"), "--output", str(tmp_path / "run"), "--device", "cpu",
                "--no-progress", "--set", f"train.teacher_checkpoint={shallow}",
                f"train.init_checkpoint={teacher_file}"])
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    # the tool reports a user error either as one ERROR record or as one "train.py: error: ..." line on stderr
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    errors += [line for line in capsys.readouterr().err.splitlines() if line.startswith("train.py: error:")]
    assert code == 2 and len(errors) == 1
    assert str(shallow) in errors[0] and "teacher.yaml" in errors[0] and "model.depth: config says 4" in errors[0]


def train_tool():
    spec = importlib.util.spec_from_file_location("tool_train_for_stages", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the shipped configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(p for p in [*PAPER.glob("*.yaml"), *QUICKSTART.glob("*.yaml")]
                                         if not is_pipeline_file(p)),  # pipeline files: test_train_pipeline.py
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_stage_configs_load_and_validate(path):
    cfg = load_config(path)  # the schema and every rule of config/validate.py
    if cfg.train.stage == "dense_to_sparse" and cfg.train.teacher_config:
        from mixformerv2.train.stages.dense_to_sparse import teacher_problems

        teacher = REPO / cfg.train.teacher_config  # relative to the repository root, the documented working folder
        assert teacher.is_file()
        assert teacher_problems(cfg.model, load_config(teacher).model) == []


def test_paper_stage1_is_the_official_recipe():
    cfg = load_config(PAPER / "b_stage1.yaml")
    m, d, t = cfg.model, cfg.data, cfg.train
    assert (m.name, m.depth, m.num_bins, m.search_size, m.template_size, m.score_head) == (
        "mixformerv2", 12, 96, 288, 128, False)  # 96 bins: the released B/S layout (official_spec §8.1)
    assert d.train_datasets == ("got10k_vottrain", "lasot_train", "coco", "trackingnet_train")
    assert d.train_ratios == (1.0,) * 4 and d.samples_per_epoch == 60000 and d.sampler_mode == "causal"
    assert (d.search_factor, d.search_center_jitter, d.search_scale_jitter, d.template_factor) == (5.0, 4.5, 0.5, 2.0)
    assert (t.batch_size_per_process, t.lr, t.epochs, t.lr_drop_epoch, t.backbone_lr_multiplier, t.grad_clip_norm) == (
        32, 4e-4, 500, 400, 0.1, 0.1)
    assert (t.iou_weight, t.l1_weight, t.kl_weight) == (2.0, 5.0, 5.0)
    assert t.teacher_config == "configs/paper/b_teacher.yaml"
    assert t.teacher_checkpoint == "runs/paper/b_teacher/model_final.pth.tar"
    assert t.init_checkpoint.endswith("mae_pretrain_vit_base.pth")
    teacher = load_config(REPO / t.teacher_config).model
    assert teacher.search_size // teacher.patch_size * 4 == 72  # 72x72 corner maps, resampled onto the 96 bins


def test_quickstart_teacher_and_student_fit(teacher_file):
    stage = build_stage(stage1_config(teacher_file), torch.device("cpu"))
    assert stage.raw_student.model_config.name == "mixformerv2"
    assert load_config(QUICKSTART / "stage1.yaml").train.teacher_config == "configs/quickstart/teacher.yaml"


# ------------------------------------------------------------------------------- prediction-token initialisation
def test_pred_token_init_std_redraws_only_tokens_the_init_checkpoint_does_not_hold(tmp_path):
    from dataclasses import replace as _replace

    from mixformerv2.config import Config, TrainConfig
    from mixformerv2.models import build_model as _build, save_checkpoint as _save
    from mixformerv2.train.stages.common import build_initialised
    from tests.model_fixtures import TINY

    def tokens(train: TrainConfig):
        torch.manual_seed(0)
        model = build_initialised(Config(model=_replace(TINY, score_head=False), train=train), torch.device("cpu"))
        return model.backbone.reg_tokens.detach()

    official, wide = tokens(TrainConfig()), tokens(TrainConfig(pred_token_init_std=1.0))
    assert official.std().item() < 0.04  # the official trunc-normal(0.02)
    assert 0.7 < wide.std().item() < 1.3
    torch.manual_seed(1)
    student = _build(_replace(TINY, score_head=False))
    _save(student, tmp_path / "student.pth.tar")  # a file that holds prediction tokens: they are kept
    kept = tokens(TrainConfig(pred_token_init_std=1.0, init_checkpoint=str(tmp_path / "student.pth.tar")))
    assert torch.equal(kept, student.backbone.reg_tokens.detach())
