"""Stage chaining: model surgery for the S recipe (MLP truncation, position-embedding resampling), the key-by-key
check of an init checkpoint against the stage config, and the paper configs walked as chains."""
from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mixformerv2.config import ConfigError, dump_config, load_config
from mixformerv2.models import build_model, read_checkpoint
from mixformerv2.models.surgery import mlp_unit_importance, resample_pos_embed, truncate_mlp
from mixformerv2.train.chaining import ChainError, init_problems, model_layout, stage_output_model
from mixformerv2.train.pipeline import is_pipeline_file
from mixformerv2.train.run import run_training
from mixformerv2.train.stage import build_stage
from mixformerv2.train.stages import TeacherMismatchError
from mixformerv2.train.stages.deep_to_shallow import stage2_teacher_problems
from test_stage2 import fake_batch, stage2_cfg, write_config, write_model

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper"
LAYOUTS = REPO / "tests" / "data" / "checkpoint_layout"
B_CHAIN = ("b_stage1", "b_stage2", "b_stage2b", "b_stage3")
S_CHAIN = ("b_stage2b", "s_stage2", "s_stage2b", "s_stage_mlp1", "s_stage3")


@pytest.fixture()
def stage1(tmp_path) -> tuple[Path, Path]:
    """(config, checkpoint) of a random tiny 4-layer, MLP-ratio-2, 32/64 px student (patch 8)."""
    config = write_config(tmp_path / "stage1.yaml")
    return config, write_model(config, tmp_path / "stage1.pth.tar")


# -- surgery ----------------------------------------------------------------------------------------------------------


def test_truncate_mlp_keeps_the_units_with_the_largest_fc1_row_times_fc2_column_norms_in_order():
    g = torch.Generator().manual_seed(0)
    fc1 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)  # unit rows of norm 1
    fc2 = torch.nn.functional.normalize(torch.randn(4, 6, generator=g), dim=0)  # unit columns
    fc1 = fc1 * torch.tensor([1.0, 5.0, 2.0, 6.0, 3.0, 9.0])[:, None]
    fc2 = fc2 * torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.1])  # unit 5: big input row, tiny output column (0.9)
    state = {"backbone.blocks.0.mlp.fc1.weight": fc1, "backbone.blocks.0.mlp.fc2.weight": fc2,
             "backbone.blocks.0.mlp.fc2.bias": torch.ones(4), "backbone.reg_tokens": torch.zeros(1, 4, 4)}
    assert torch.allclose(mlp_unit_importance(fc1, None, fc2), torch.tensor([1.0, 5.0, 2.0, 6.0, 3.0, 0.9]))
    out, kept = truncate_mlp(state, 3)
    assert kept == {"backbone.blocks.0.mlp.": [1, 3, 4]}  # products 5, 6, 3 beat 2, 1 and 0.9
    assert torch.equal(out["backbone.blocks.0.mlp.fc1.weight"], fc1[[1, 3, 4]])
    assert torch.equal(out["backbone.blocks.0.mlp.fc2.weight"], fc2[:, [1, 3, 4]])
    assert out["backbone.blocks.0.mlp.fc2.bias"] is state["backbone.blocks.0.mlp.fc2.bias"]
    with pytest.raises(ValueError, match="cannot keep 7 of 6"):
        truncate_mlp(state, 7)


def test_truncating_to_the_full_width_is_the_identity(stage1):
    state = read_checkpoint(stage1[1])["net"]
    out, kept = truncate_mlp(state, 64)
    assert all(index == list(range(64)) for index in kept.values()) and len(kept) == 4
    assert out.keys() == state.keys() and all(torch.equal(out[k], state[k]) for k in state)


def test_units_that_do_not_reach_the_output_are_cut_without_changing_it(stage1):
    """A model whose dropped units have zero fc2 columns computes the same function after truncation to ratio 1."""
    wide_cfg = load_config(stage1[0]).model
    wide = build_model(wide_cfg).eval()
    with torch.no_grad():
        for block in wide.backbone.blocks:
            block.mlp.fc2.weight[:, 1::2] = 0.0  # the odd units add nothing; the even ones are kept
            block.mlp.fc1.weight[0::2] *= 3.0
    narrow_state, kept = truncate_mlp(wide.state_dict(), 32)
    assert all(index == list(range(0, 64, 2)) for index in kept.values())
    narrow = build_model(replace(wide_cfg, mlp_ratio=1.0)).eval()
    narrow.load_state_dict(narrow_state, strict=True)
    batch = fake_batch()
    inputs = (batch["template_images"][:, 0], [batch["template_images"][:, 1]], batch["search_image"])
    with torch.no_grad():
        assert torch.allclose(wide(*inputs).side_logits, narrow(*inputs).side_logits, atol=1e-5)


def test_resampling_a_position_grid_to_its_own_size_is_the_identity_and_a_constant_grid_stays_constant():
    pos = torch.randn(1, 81, 8)
    assert resample_pos_embed(pos, 9) is pos
    constant = torch.full((1, 18 * 18, 4), 0.25)
    assert torch.allclose(resample_pos_embed(constant, 14), torch.full((1, 14 * 14, 4), 0.25), atol=1e-6)
    with pytest.raises(ValueError, match="not a square grid"):
        resample_pos_embed(torch.zeros(1, 10, 4), 3)


def test_a_linear_position_grid_stays_linear_away_from_the_border():
    """18x18 -> 14x14: new cell o covers old coordinate x = (o + 0.5) * 18 / 14 - 0.5. A grid linear in the column
    (channel 0) and in the row (channel 1) stays exactly constant along the other axis, increases monotonically, and,
    where the kernel does not reach the border, keeps the value at x to within 1% of a cell (antialiased bicubic
    reproduces a linear function only approximately)."""
    rows, cols = torch.meshgrid(torch.arange(18.0), torch.arange(18.0), indexing="ij")
    pos = torch.stack([2.0 * cols + 1.0, -0.5 * rows], dim=-1).reshape(1, 18 * 18, 2)
    out = resample_pos_embed(pos, 14).reshape(14, 14, 2)
    assert torch.allclose(out[:, :, 0], out[:1, :, 0].expand(14, 14)) and (out[0, 1:, 0] > out[0, :-1, 0]).all()
    assert torch.allclose(out[:, :, 1], out[:, :1, 1].expand(14, 14)) and (out[1:, 0, 1] < out[:-1, 0, 1]).all()
    x = (torch.arange(14.0) + 0.5) * 18 / 14 - 0.5
    inner = slice(3, 11)
    assert torch.allclose(out[0, inner, 0], 2.0 * x[inner] + 1.0, atol=0.01 * 2.0)
    assert torch.allclose(out[inner, 0, 1], -0.5 * x[inner], atol=0.01 * 0.5)


# -- init checkpoints against the stage config ----------------------------------------------------------------------


@pytest.mark.parametrize("field, value, key, has", [
    ("depth", 3, "model.depth", "has 3 blocks"),
    ("num_bins", 8, "model.num_bins", "has 8 bins"),
    ("mlp_ratio", 1.0, "model.mlp_ratio", "has MLP ratio 1.0 (32 hidden units)"),
])
def test_a_checkpoint_that_cannot_start_the_stage_is_one_line_naming_the_key_and_both_files(stage1, tmp_path, field,
                                                                                           value, key, has):
    wrong = write_model(write_config(tmp_path / "other.yaml", **{field: value}), tmp_path / "other.pth.tar")
    cfg = stage2_cfg(stage1, f"train.init_checkpoint={wrong}")
    with pytest.raises(ChainError) as err:
        run_training(cfg, tmp_path / "run", loaders=lambda *a: pytest.fail("loaders built"), config_file=stage1[0],
                     progress=False)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{key}: {stage1[0]} says ") and f"but {wrong} {has}" in text


def test_a_checkpoint_of_another_layout_is_one_line_naming_both_files(stage1, tmp_path):
    state = read_checkpoint(stage1[1])["net"]
    del state["box_head.layers.1.1.bias"]
    broken = tmp_path / "broken.pth.tar"
    torch.save({"net": state}, broken)
    with pytest.raises(ChainError) as err:
        build_stage(stage2_cfg(stage1, f"train.init_checkpoint={broken}"), torch.device("cpu"))
    text = str(err.value.for_config("configs/x.yaml"))
    assert "\n" not in text
    assert text.startswith("layout: configs/x.yaml says mixformerv2(depth=4") and str(broken) in text
    assert "missing: box_head.layers.1.1.bias" in text


def test_the_config_stored_in_a_final_model_is_compared_too(stage1, tmp_path):
    """Heads are not visible in the tensors' shapes; the config the trainer stores in model_final says them."""
    state = read_checkpoint(stage1[1])["net"]
    stored = load_config(stage1[0], ["model.num_heads=4"])
    final = tmp_path / "final.pth.tar"
    torch.save({"net": state, "config": dump_config(stored)}, final)
    with pytest.raises(ChainError, match=r"^model\.num_heads: the stage config says 2 but .*final\.pth\.tar has 4"):
        build_stage(stage2_cfg(stage1, f"train.init_checkpoint={final}"), torch.device("cpu"))


ADAPT = ["model.mlp_ratio=1.0", "model.template_size=24", "model.search_size=48",
         "train.init_adapt=[mlp_ratio, search_size, template_size]", "train.teacher_adapt=[search_size, template_size]"]


def test_init_adapt_truncates_the_mlp_and_resamples_the_position_grids_of_student_and_teacher(stage1):
    stage = build_stage(stage2_cfg(stage1, *ADAPT, "train.distill_layers_student=[3]",
                                   "train.distill_layers_teacher=[3]"), torch.device("cpu"))
    source = read_checkpoint(stage1[1])["net"]
    truncated, _ = truncate_mlp(source, 32)
    student, teacher = stage.raw_student.state_dict(), stage.teacher.state_dict()
    for key in ("backbone.blocks.2.mlp.fc1.weight", "backbone.blocks.2.mlp.fc2.weight", "box_head.layers.1.0.weight"):
        assert torch.equal(student[key], truncated[key])
    assert torch.equal(student["backbone.pos_embed_s"], resample_pos_embed(source["backbone.pos_embed_s"], 6))
    assert torch.equal(student["backbone.pos_embed_t"], resample_pos_embed(source["backbone.pos_embed_t"], 3))
    assert torch.equal(teacher["backbone.pos_embed_s"], student["backbone.pos_embed_s"])
    assert teacher["backbone.blocks.0.mlp.fc1.weight"].shape == (64, 32)  # the teacher keeps its MLP
    batch = fake_batch()
    batch["template_images"] = batch["template_images"][..., :24, :24]
    batch["search_image"] = batch["search_image"][..., :48, :48]
    loss, metrics = stage.loss(batch, 0)
    assert torch.isfinite(loss) and "loss/feat" in metrics


def test_a_difference_not_declared_in_init_adapt_or_teacher_adapt_is_refused(stage1):
    with pytest.raises(ChainError, match=r"^model\.search_size: the stage config says 48 px \(6x6 position grid\) "
                                         r"but .*stage1\.pth\.tar has 64 px \(8x8 position grid\)"):
        build_stage(stage2_cfg(stage1, *ADAPT[:-2], "train.init_adapt=[mlp_ratio, template_size]", ADAPT[-1]),
                    torch.device("cpu"))
    with pytest.raises(TeacherMismatchError) as err:
        build_stage(stage2_cfg(stage1, *ADAPT[:-1]), torch.device("cpu"))
    assert "model.template_size 32 differs from the student's 24" in str(err.value)
    assert str(stage1[0]) in str(err.value) and str(stage1[1]) in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("train.init_adapt=[depth]", r"train\.init_adapt\[0\]: 'depth' is not one of mlp_ratio"),
    ("train.teacher_adapt=[mlp_ratio]", r"train\.teacher_adapt\[0\]: 'mlp_ratio' is not one of search_size"),
    ("train.init_adapt=[mlp_ratio, mlp_ratio]", r"train\.init_adapt: repeats a key"),
])
def test_adapt_keys_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override, "train.init_checkpoint=x.pth"])


# -- the paper configs as chains --------------------------------------------------------------------------------------


def paper(name: str):
    return load_config(PAPER / f"{name}.yaml")


def released_layout(name: str) -> dict[str, tuple[int, ...]]:
    rows = (line.split("\t") for line in (LAYOUTS / name).read_text().splitlines() if line.strip())
    return {key: tuple(ast.literal_eval(shape)) for key, shape in rows}


@pytest.mark.parametrize("path", [p for p in sorted(PAPER.glob("*.yaml")) if not is_pipeline_file(p)],
                         ids=lambda p: p.name)
def test_every_paper_config_loads_and_builds(path):
    cfg = load_config(path)
    layout = model_layout(cfg.model)
    assert sum(1 for key in layout if key.endswith("attn.qkv.weight")) == cfg.model.depth


@pytest.mark.parametrize("chain, released", [(B_CHAIN, "mixformerv2_base.tsv"), (S_CHAIN, "mixformerv2_small.tsv")])
def test_each_paper_stage_starts_from_the_previous_one_and_the_chain_ends_in_the_released_layout(chain, released):
    for previous, name in zip(chain, chain[1:]):
        cfg = paper(name)
        assert cfg.train.init_checkpoint == f"runs/paper/{previous}/model_final.pth.tar"
        assert init_problems(cfg, stage_output_model(paper(previous)), previous, name) == []
        if cfg.train.stage == "deep_to_shallow":  # its teacher fits, once adapted to the student's crops
            teacher = load_config(REPO / cfg.train.teacher_config)
            sizes = {k: getattr(cfg.model, k) for k in cfg.train.teacher_adapt}
            adapted = replace(teacher, model=replace(teacher.model, **sizes))
            assert stage2_teacher_problems(cfg, adapted) == []
            assert cfg.train.teacher_checkpoint == f"runs/paper/{Path(cfg.train.teacher_config).stem}/" \
                                                   "model_final.pth.tar"
    assert model_layout(stage_output_model(paper(chain[-1]))) == released_layout(released)


def test_the_stage_output_is_pruned_only_when_the_fade_completes():
    b2 = paper("b_stage2")
    assert stage_output_model(b2).depth == 8
    assert stage_output_model(replace(b2, train=replace(b2.train, epochs=39))).depth == 12  # rate 0.00154 at the end
    assert stage_output_model(replace(b2, train=replace(b2.train, epochs=10, remove_epochs=10))).depth == 8


def test_a_wrong_chain_names_both_files_and_the_key():
    problems = init_problems(paper("b_stage2b"), stage_output_model(paper("b_stage1")),
                             "runs/paper/b_stage1/model_final.pth.tar", "configs/paper/b_stage2b.yaml")
    assert problems == ["model.depth: configs/paper/b_stage2b.yaml says 8 but runs/paper/b_stage1/model_final.pth.tar "
                        "has 12 blocks"]
    problems = init_problems(paper("s_stage3"), stage_output_model(paper("s_stage2b")), "a.pth.tar", "s3.yaml")
    assert [p.split(":")[0] for p in problems] == ["model.mlp_ratio", "model.template_size", "model.search_size"]
