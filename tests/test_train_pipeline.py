"""Pipeline files (train/pipeline.py) and tools/pipeline.py: loading errors, resolution, a tiny three-stage chain
(teacher -> dense_to_sparse -> deep_to_shallow with pruning) that runs, is skipped when finished, refuses a changed
config, reruns with --fresh, resumes a stage killed half-way, and writes its summary; tracking + scoring a stage."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from mixformerv2.config import load_config
from mixformerv2.data.synthetic import generate_all
from mixformerv2.data.synthetic.scene import PRESETS
from mixformerv2.models import build_model, read_checkpoint
from mixformerv2.train.pipeline import (PipelineError, is_pipeline_file, load_pipeline, select_stages, stage_config,
                                        stage_overrides)
from mixformerv2.train.pipeline_run import format_summary, is_finished, remove_stage_dir
from mixformerv2.train.stages.dense_to_sparse import DenseToSparseStage
from test_tools_cli import assert_one_error_line
from tool_loader import load_tool

MODEL = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "patch_size": 8, "template_size": 32,
         "search_size": 64, "drop_path_rate": 0.0}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The tiny preset's videos made long enough to be drawn (>= 20 frames)."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_all(root, replace(PRESETS["tiny"], lasot_frames=24, got10k_frames=24), formats=("lasot", "got10k"))
    return root


def write_stage_configs(folder: Path, data_root: Path) -> None:
    """base.yaml (tiny data and optimisation) and the three stage configs of the test pipeline."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"model": MODEL,
            "data": {"train_datasets": ["lasot_train"], "train_ratios": [1.0], "val_datasets": ["got10k_val"],
                     "val_ratios": [1.0], "samples_per_epoch": 8, "val_samples_per_epoch": 4, "num_workers": 0,
                     "max_sample_interval": 20, "roots": {"lasot": str(data_root / "lasot"),
                                                          "got10k": str(data_root / "got10k")}},
            "train": {"epochs": 1, "batch_size_per_process": 4, "lr": 1e-3, "print_interval": 1, "val_interval": 1},
            "test": {"search_factor": 3.0}}
    stages = {
        "teacher": {"model": {"name": "mixvit", "head_type": "corner_up", "head_channels": 16},
                    "train": {"stage": "teacher"}},
        "stage1": {"model": {"name": "mixformerv2", "head_type": "mlp", "num_bins": 16},
                   "train": {"stage": "dense_to_sparse", "epochs": 2}},
        "stage2": {"model": {"name": "mixformerv2", "head_type": "mlp", "num_bins": 16},
                   "train": {"stage": "deep_to_shallow", "remove_layers": [0], "remove_epochs": 1,
                             "distill_layers_student": [1], "distill_layers_teacher": [1]}},
    }
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    for name, body in stages.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"_base_": "base.yaml", **body}))


def write_pipeline(path: Path, output: Path, data_root: Path | None = None, **extra) -> Path:
    stages = [{"name": "teacher", "config": "teacher.yaml"},
              {"name": "stage1", "config": "stage1.yaml", "teacher_from": "teacher"},
              {"name": "stage2", "config": "stage2.yaml", "init_from": "stage1", "teacher_from": "stage1"}]
    body = {"output": str(output), "stages": stages, **extra}
    if data_root is not None:
        body["evaluate"] = {"dataset": "lasot", "root": str(data_root / "lasot")}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture()
def configs(tmp_path, data_root) -> Path:
    write_stage_configs(tmp_path / "cfg", data_root)
    return tmp_path / "cfg"


# ------------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("edit, message", [
    (lambda b: b.update(outputs="x"), "outputs: unknown key (known: output, evaluate, stages)"),
    (lambda b: b["stages"][1].update(teacher="teacher"), "stages[1].teacher: unknown key"),
    (lambda b: b["stages"][1].update(teacher_from="teachr"), "stages[1].teacher_from: 'teachr' is not a stage of"),
    (lambda b: b["stages"][1].update(init_from="stage2"), "stages[1].init_from: 'stage2' is stages[2], not an "
                                                          "earlier stage"),
    (lambda b: b["stages"][1].update(init_from="stage1"), "stages[1].init_from: 'stage1' is stages[1], not an "
                                                          "earlier stage"),
    (lambda b: b["stages"][2].update(name="stage1"), "stages[2].name: 'stage1' is also stages[1]'s name"),
    (lambda b: b["stages"][0].update(config="nope.yaml"), "stages[0].config: "),
    (lambda b: b["stages"][0].update(set="train.epochs=2"), "stages[0].set: expected a list of KEY=VALUE strings"),
    (lambda b: b["stages"][0].update(evaluate=True), "stages[0].evaluate: true, but the file has no top-level "
                                                     "evaluate:"),
    (lambda b: b.update(evaluate={"dataset": "lasot", "path": "x"}), "evaluate.path: unknown key"),
    (lambda b: b.pop("output"), "output: missing"),
    (lambda b: b["stages"][0].update(name="../up"), "stages[0].name: '../up' is not a folder name"),
])
def test_a_bad_pipeline_file_is_one_error_naming_the_file_and_key(configs, tmp_path, edit, message):
    path = write_pipeline(configs / "pipeline.yaml", tmp_path / "runs")
    body = yaml.safe_load(path.read_text())
    edit(body)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    with pytest.raises(PipelineError) as err:
        load_pipeline(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_stages_resolve_start_and_teacher_files_and_overrides_in_order(configs, tmp_path):
    body = yaml.safe_load(write_pipeline(configs / "p.yaml", tmp_path / "r u:n#s").read_text())
    body["stages"][2]["set"] = ["train.epochs=3"]
    (configs / "p.yaml").write_text(yaml.safe_dump(body))
    pipeline = load_pipeline(configs / "p.yaml")
    stage2 = pipeline.stage("stage2")
    assert stage2.config == configs / "stage2.yaml"
    cfg = stage_config(pipeline, stage2, ["train.epochs=4"])  # --set comes after the file's set
    out = tmp_path / "r u:n#s"  # characters YAML would misread survive
    assert cfg.train.init_checkpoint == str(out / "stage1" / "model_final.pth.tar")
    assert cfg.train.teacher_checkpoint == str(out / "stage1" / "model_final.pth.tar")
    assert cfg.train.teacher_config == str(out / "stage1" / "model_final.yaml")
    assert cfg.train.epochs == 4 and stage_overrides(pipeline, stage2)[-1] == "train.epochs=3"
    assert stage_config(pipeline, pipeline.stage("teacher")).train.init_checkpoint == ""
    assert [s.name for s in select_stages(pipeline, until="stage1")] == ["teacher", "stage1"]
    assert [s.name for s in select_stages(pipeline, only=["stage2", "teacher"])] == ["teacher", "stage2"]
    with pytest.raises(PipelineError, match=r"^--until stage9: not a stage of .*\(stages: teacher, stage1, stage2\)"):
        select_stages(pipeline, until="stage9")


def test_fresh_refuses_to_delete_a_folder_that_is_not_a_stage_folder(tmp_path):
    folder = tmp_path / "configs"
    (folder / "keep.yaml").parent.mkdir()
    (folder / "keep.yaml").write_text("x")
    with pytest.raises(PipelineError, match="not a stage folder"):
        remove_stage_dir(folder)
    assert (folder / "keep.yaml").is_file()
    (folder / "config.yaml").write_text("x")
    remove_stage_dir(folder)
    assert not folder.exists()


# ----------------------------------------------------------------------------------------------- the tool
def run_tool(*args: str) -> int:
    return load_tool("pipeline").main(["--device", "cpu", "--no-progress", *args])


def summary(output: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((output / "summary.json").read_text())["stages"]}


def test_a_pipeline_runs_skips_refuses_a_changed_config_and_reruns_fresh(configs, tmp_path, capsys):
    out = tmp_path / "runs"
    path = write_pipeline(configs / "pipeline.yaml", out)
    assert run_tool("--pipeline", str(path)) == 0
    first = summary(out)
    assert [s["status"] for s in first.values()] == ["trained"] * 3
    for name, depth in (("teacher", 2), ("stage1", 2), ("stage2", 1)):  # stage 2 faded layer 0 out and pruned it
        record, folder = first[name], out / name
        model = build_model(load_config(folder / "model_final.yaml").model)
        assert record["depth"] == depth == len(model.backbone.blocks)
        assert record["params"] == sum(t.numel() for t in model.state_dict().values())
        assert record["wall_time_s"] > 0 and record["config"] == str(configs / f"{name}.yaml")
        assert set(record["train"]) >= {"loss", "iou"} and "iou" in record["val"]
    pruned = load_config(out / "stage2" / "model_final.yaml")  # block 1 distilled from teacher block 1 is now 0
    assert pruned.model.depth == 1 and pruned.train.distill_layers_student == (0,)
    assert pruned.train.distill_layers_teacher == (1,) and pruned.train.remove_layers == ()
    # stage 2 was taught by stage 1's final model and started from it
    stage2_cfg = load_config(out / "stage2" / "config.yaml")
    assert stage2_cfg.train.teacher_config == str(out / "stage1" / "model_final.yaml")
    assert stage2_cfg.train.init_checkpoint == str(out / "stage1" / "model_final.pth.tar")
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| stage | status | depth | params |") and "| stage2 | trained | 1 |" in table

    stamps = {n: (out / n / "model_final.pth.tar").stat().st_mtime_ns for n in first}
    assert run_tool("--pipeline", str(path)) == 0  # everything finished: nothing trains again
    again = summary(out)
    assert [s["status"] for s in again.values()] == ["skipped"] * 3
    assert {n: (out / n / "model_final.pth.tar").stat().st_mtime_ns for n in first} == stamps
    assert again["stage2"]["wall_time_s"] == first["stage2"]["wall_time_s"]  # recorded when it finished
    assert "stage stage1: skipped" in (out / "pipeline.log").read_text()

    capsys.readouterr()
    assert run_tool("--pipeline", str(path), "--set", "train.lr=0.002") == 2
    assert_one_error_line(capsys.readouterr(), "pipeline.py: error: ", "stage teacher finished with another config "
                          "than this run's, at train.lr (finished 0.001, this run 0.002); run with --fresh --only "
                          "teacher")

    assert run_tool("--pipeline", str(path), "--only", "stage2", "--fresh") == 0
    assert [s["status"] for s in summary(out).values()] == ["trained"]
    assert (out / "teacher" / "model_final.pth.tar").stat().st_mtime_ns == stamps["teacher"]


def test_a_stage_killed_half_way_resumes_and_a_changed_start_file_is_noticed(configs, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    path = write_pipeline(configs / "pipeline.yaml", out)
    original = DenseToSparseStage.on_epoch_start

    def killed_in_epoch_1(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(DenseToSparseStage, "on_epoch_start", killed_in_epoch_1)
    assert run_tool("--pipeline", str(path)) == 130  # interrupted inside stage1, after its epoch-0 checkpoint
    assert not (out / "stage1" / "model_final.pth.tar").exists()
    assert list((out / "stage1" / "checkpoints").glob("step_*.pt"))
    monkeypatch.setattr(DenseToSparseStage, "on_epoch_start", original)
    assert run_tool("--pipeline", str(path)) == 0
    records = summary(out)
    assert [records[n]["status"] for n in ("teacher", "stage1", "stage2")] == ["skipped", "resumed", "trained"]
    assert "resumed from" in (out / "stage1" / "train.log").read_text()

    pipeline = load_pipeline(path)
    teacher = out / "teacher" / "model_final.pth.tar"  # the teacher trained again: stage1 is stale
    obj = read_checkpoint(teacher)
    obj["net"] = {k: v + 1 for k, v in obj["net"].items()}
    torch.save(obj, teacher)
    stage1 = pipeline.stage("stage1")
    with pytest.raises(PipelineError, match=r"stage stage1 was trained from train.teacher_checkpoint .*whose content "
                                            r"has changed since"):
        is_finished(pipeline, stage1, stage_config(pipeline, stage1))


def test_a_stage_is_tracked_and_scored_on_the_benchmark(configs, tmp_path, data_root):
    out = tmp_path / "runs"
    path = write_pipeline(configs / "pipeline.yaml", out, data_root)
    assert run_tool("--pipeline", str(path), "--until", "stage1", "--no-evaluate") == 0
    assert summary(out)["stage1"]["benchmark"] is None
    assert run_tool("--pipeline", str(path), "--only", "stage1", "--evaluate") == 0
    scores = summary(out)["stage1"]["benchmark"]
    assert scores["num_sequences"] == 3 and 0.0 <= scores["auc"] <= 100.0
    assert set(scores) >= {"auc", "precision", "norm_precision"}
    results = out / "stage1" / "results" / "stage1" / "lasot"
    assert len(list(results.glob("*_time.txt"))) == 3 and (results / "run.json").is_file()


def test_running_a_stage_whose_start_was_not_trained_names_the_stage_to_run(configs, tmp_path, capsys):
    path = write_pipeline(configs / "pipeline.yaml", tmp_path / "runs")
    assert run_tool("--pipeline", str(path), "--only", "stage2") == 2
    assert_one_error_line(capsys.readouterr(), "pipeline.py: error: stage stage2: init_from stage1: ",
                          "not found; run stage stage1 first")


def test_the_summary_table_marks_missing_values():
    from mixformerv2.train.pipeline_run import StageRecord

    table = format_summary([StageRecord("s", "s.yaml", "skipped", "runs/s", depth=4, params=1234567,
                                        wall_time_s=None, train={"loss": 0.5, "iou": 0.25},
                                        benchmark={"auc": 61.234, "norm_precision": 70.0, "precision": 65.0})])
    assert table.splitlines()[2] == "| s | skipped | 4 | 1,234,567 | - | 0.5000 | 0.250 | - | 61.2 | 70.0 | 65.0 |"


# ---------------------------------------------------------------------------------------- shipped pipelines
REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"configs/paper/mixformerv2_b.yaml": ["b_teacher", "b_stage1", "b_stage2", "b_stage2b", "b_stage3"],
           "configs/paper/mixformerv2_s.yaml": ["b_teacher", "b_stage1", "b_stage2", "b_stage2b", "s_stage2",
                                               "s_stage2b", "s_stage_mlp1", "s_stage3"],
           "configs/quickstart/pipeline.yaml": ["teacher", "stage1", "stage2", "stage2b", "stage3"]}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_pipeline_files_load_and_their_stage_configs_resolve(name):
    raw = yaml.safe_load((REPO / name).read_text())
    assert all((REPO / name).parent.joinpath(s["config"]).is_file() for s in raw["stages"])
    pipeline = load_pipeline(REPO / name)
    assert pipeline.names == SHIPPED[name]
    for stage in pipeline.stages:
        cfg = stage_config(pipeline, stage)
        assert Path(stage.config).stem == stage.name or name.endswith("quickstart/pipeline.yaml")
        if stage.init_from:
            assert cfg.train.init_checkpoint == str(pipeline.model_path(stage.init_from))


RELEASED = {"configs/paper/mixformerv2_b.yaml": "mixformerv2_base.tsv",
            "configs/paper/mixformerv2_s.yaml": "mixformerv2_small.tsv"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_pipeline_stage_fits_what_its_sources_end_with_and_the_last_is_the_released_layout(name):
    from mixformerv2.train import chaining
    from mixformerv2.train.stages.dense_to_sparse import teacher_problems
    from mixformerv2.train.stages.deep_to_shallow import stage2_teacher_problems

    pipeline = load_pipeline(REPO / name)
    configs = {s.name: stage_config(pipeline, s) for s in pipeline.stages}
    for stage in pipeline.stages:
        cfg = configs[stage.name]
        if stage.init_from and cfg.train.stage in ("teacher", "dense_to_sparse"):
            # a partial initialisation (build_initialised): every transformer block tensor comes from the source
            source = chaining.model_layout(chaining.stage_output_model(configs[stage.init_from]))
            blocks = {k: v for k, v in chaining.model_layout(cfg.model).items() if k.startswith("backbone.blocks.")}
            assert blocks and all(source.get(k) == shape for k, shape in blocks.items()), stage.name
        elif stage.init_from:
            source = chaining.stage_output_model(configs[stage.init_from])
            assert chaining.init_problems(cfg, source, pipeline.model_path(stage.init_from), stage.config) == []
        if stage.teacher_from:  # the teacher is the teacher stage's final model, adapted to the student's crops
            teacher = configs[stage.teacher_from]
            sizes = {k: getattr(cfg.model, k) for k in getattr(cfg.train, "teacher_adapt", ())}
            teacher = replace(teacher, model=replace(chaining.stage_output_model(teacher), **sizes))
            problems = (stage2_teacher_problems(cfg, teacher) if cfg.train.stage == "deep_to_shallow"
                        else teacher_problems(cfg.model, teacher.model))
            assert problems == [], stage.name
    if name in RELEASED:
        rows = (line.split("\t") for line in (REPO / "tests/data/checkpoint_layout" / RELEASED[name]).read_text()
                .splitlines() if line.strip())
        released = {key: tuple(int(n) for n in shape.strip("()").split(",") if n.strip()) for key, shape in rows}
        assert chaining.model_layout(chaining.stage_output_model(configs[pipeline.names[-1]])) == released


def test_pipeline_files_are_told_apart_from_stage_configs():
    assert {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml") if is_pipeline_file(p)} \
        == set(SHIPPED)
