"""Config loading: merging (``_base_`` and ``--set``), precedence of per-benchmark settings, registered names,
enumerations and cross-field rules, immutability, dumping."""
import copy
import dataclasses
import pickle
import re
from pathlib import Path

import pytest
import yaml

from mixformerv2.config import ConfigError, dump_config, load_config, shadowed_overrides, validate_config
from mixformerv2.config import TestConfig as TrackerSettings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
B, S = CONFIGS / "mixformerv2_b.yaml", CONFIGS / "mixformerv2_s.yaml"


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------- merging
def test_set_one_benchmark_value_keeps_the_rest_of_test_datasets():
    before = load_config(B)
    after = load_config(B, ["test.datasets.got10k_test.search_factor=4.8"])
    got = after.test.for_dataset("got10k_test")
    assert (got.search_factor, got.update_interval) == (4.8, 10)  # the interval is GOT-10k's, not the default 200
    assert after.test.for_dataset("lasot").search_factor == 5.0  # not the test.* default 4.5
    assert {k: v for k, v in after.test.datasets.items() if k != "got10k_test"} == {
        k: v for k, v in before.test.datasets.items() if k != "got10k_test"}


def test_base_inheritance_merges_mappings_and_names_the_file_of_a_bad_key(tmp_path):
    child = write(tmp_path / "child.yaml", f"_base_: {S}\ntest:\n  datasets:\n    got10k_test: {{search_factor: 4.8}}\n"
                                           f"    otb100: {{update_interval: 50}}\n")
    cfg = load_config(child)
    base = load_config(S)
    got = cfg.test.datasets["got10k_test"]
    assert (got.search_factor, got.update_interval) == (4.8, 15)
    assert cfg.test.datasets["lasot"] == base.test.datasets["lasot"]
    assert cfg.test.datasets["otb100"].update_interval == 50
    assert cfg.model == base.model
    write(tmp_path / "bad_base.yaml", "model:\n  dpeth: 4\n")
    with pytest.raises(ConfigError, match=r"bad_base\.yaml: model\.dpeth: unknown key"):
        load_config(write(tmp_path / "c2.yaml", "_base_: bad_base.yaml\nmodel: {depth: 4}\n"))


def test_set_merges_data_roots_and_null_removes_an_entry():
    cfg = load_config(None, ["data.roots.lasot_train=/data/lasot", "data.roots.got10k=/data/got"])
    assert dict(cfg.data.roots) == {"lasot_train": "/data/lasot", "got10k": "/data/got"}
    cfg = load_config(B, ["data.roots={coco: /c}", "data.roots.lasot_train=/l", "test.datasets.lasot=null"])
    assert dict(cfg.data.roots) == {"coco": "/c", "lasot_train": "/l"}
    assert "lasot" not in cfg.test.datasets and cfg.test.for_dataset("lasot").search_factor == 4.5


def test_overrides_apply_in_order_and_replace_lists():
    cfg = load_config(B, ["model.depth=4", "model.depth=6", "data.train_datasets=[lasot_train, coco]",
                          "data.train_ratios=[2, 1]"])
    assert cfg.model.depth == 6
    assert cfg.data.train_datasets == ("lasot_train", "coco") and cfg.data.train_ratios == (2.0, 1.0)


# ---------------------------------------------------------------------------------------------- precedence
def test_benchmark_entry_wins_over_the_test_default():
    cfg = load_config(S, ["test.search_factor=5.0"])
    assert cfg.test.for_dataset("LaSOT").search_factor == 4.4  # its own entry wins
    assert cfg.test.for_dataset("tnl2k").search_factor == 5.0  # its entry leaves search_factor unset
    assert cfg.test.for_dataset("otb100").search_factor == 5.0  # no entry at all
    assert cfg.test.for_dataset(None).search_factor == 5.0
    assert cfg.test.dataset_overrides("lasot") == {"search_factor": 4.4, "update_interval": 200}
    assert load_config(S, ["test.datasets.lasot.search_factor=5.0"]).test.for_dataset("lasot").search_factor == 5.0
    effective = cfg.test.for_dataset("got10k_test")
    assert isinstance(effective, TrackerSettings) and dict(effective.datasets) == {}
    assert (effective.search_factor, effective.update_interval, effective.online_size) == (4.55, 15, 1)


def test_shadowed_overrides_name_the_winning_key():
    cfg = load_config(S, ["test.search_factor=5.0", "test.update_interval=30"])
    messages = shadowed_overrides(cfg, ["test.search_factor=5.0", "test.update_interval=30"], "lasot")
    assert len(messages) == 2 and "test.datasets.lasot.search_factor=4.4 wins" in messages[0]
    assert shadowed_overrides(cfg, ["test.search_factor=5.0", "test.update_interval=30"], "tnl2k") == [
        "--set test.update_interval=30 has no effect on tnl2k: test.datasets.tnl2k.update_interval=200 wins (set "
        "test.datasets.tnl2k.update_interval instead)"]
    assert shadowed_overrides(cfg, ["test.search_factor=5.0"], "otb100") == []


# ----------------------------------------------------------------------------------------- names and rules
@pytest.mark.parametrize("override, message", [
    ("test.datasets.lasott.search_factor=5.0", r"test\.datasets\.lasott: unknown benchmark 'lasott'"),
    ("data.roots.lasott=/x", r"data\.roots\.lasott: unknown dataset 'lasott'"),
    ("data.train_datasets=[lasot_train, cocoo, got10k_vottrain, trackingnet_train]",
     r"data\.train_datasets\[1\]: unknown dataset 'cocoo'"),
    ("data.val_datasets=[got10k_val_]", r"data\.val_datasets\[0\]: unknown dataset"),
    ("train.stage=sccore", r"train\.stage: 'sccore' is not one of teacher, dense_to_sparse, deep_to_shallow, score"),
    ("data.sampler_mode=random", r"data\.sampler_mode: 'random' is not one of causal, trident_pro"),
    ("model.name=vit", r"model\.name: 'vit' is not one of mixformerv2, mixvit"),
    ("model.head_type=corner", r"model\.head_type: 'corner' is not one of mlp \(the heads of model\.name mixformerv2"),
    ("train.remove_layers=[0, 3, 6, 9]", r"train\.remove_layers: layer 9 does not exist in the model \(model\.depth\) "
                                         r"with 8 layers"),
    ("train.remove_layers=[1, 1]", r"train\.remove_layers: repeats a layer"),
    ("train.distill_layers_student=[1, 8]", r"train\.distill_layers_student: layer 8 does not exist"),
    ("train.init_drop_layers=[0, 12]", r"train\.init_drop_layers: layer 12 does not exist in the checkpoint"),
    ("train.distill_layers_teacher=[2, 5]", r"train\.distill_layers_teacher: has 2 layers for 0"),
    ("model.template_size=120", r"model\.template_size: 120 px is not a multiple of model\.patch_size 16"),
    ("model.num_bins=1", r"model\.num_bins: must be > 1, got 1"),
    ("model.embed_dim=100", r"model\.embed_dim: 100 is not divisible by model\.num_heads 12"),
    ("data.train_ratios=[1, 1]", r"data\.train_ratios: has 2 entries for 4 data\.train_datasets"),
    ("data.gray_prob=1.5", r"data\.gray_prob: must be in \[0, 1\], got 1\.5"),
    ("test.score_threshold=-0.1", r"test\.score_threshold: must be in \[0, 1\]"),
    ("test.datasets.lasot.update_interval=0", r"test\.datasets\.lasot\.update_interval: must be >= 1, got 0"),
    ("test.search_factor=0", r"test\.search_factor: must be > 0"),
    ("model.image_mean=[0.5, 0.5]", r"model\.image_mean: needs 3 values"),
    ("model.image_std=[0.2, 0.0, 0.2]", r"model\.image_std: must be > 0"),
])
def test_bad_values_name_the_override_and_key(override, message):
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(override)}: {message}"):
        load_config(B, [override])


def test_misspelt_benchmark_in_a_file_names_file_and_key(tmp_path):
    path = write(tmp_path / "bad.yaml", f"_base_: {B}\ntest:\n  datasets:\n    lasott: {{search_factor: 5.0}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: test\.datasets\.lasott: unknown benchmark"):
        load_config(path)


def test_a_cross_field_error_names_the_source_that_set_a_key_last(tmp_path):
    stage = write(tmp_path / "stage2a.yaml", "model: {depth: 12}\ntrain: {stage: deep_to_shallow, remove_layers: "
                                             "[0, 3, 6, 9], distill_layers_student: [2, 5, 8, 11], "
                                             "distill_layers_teacher: [2, 5, 8, 11]}\n")
    assert load_config(stage).train.remove_layers == (0, 3, 6, 9)
    with pytest.raises(ConfigError, match=r"^--set model\.depth=8: train\.remove_layers: layer 9 does not exist"):
        load_config(stage, ["model.depth=8"])
    # a pair of overrides that is consistent only once both are applied is accepted
    cfg = load_config(None, ["data.train_datasets=[lasot_train]", "data.train_ratios=[1.0]"])
    assert cfg.data.train_ratios == (1.0,)


def test_official_stage_layouts_are_valid():
    # stage 2b: an 8-layer student initialised from the 12-layer stage-2a checkpoint minus layers 0, 3, 6, 9
    cfg = load_config(None, ["model.depth=8", "train.init_drop_layers=[0, 3, 6, 9]",
                             "train.distill_layers_student=[1, 3, 5, 7]", "train.distill_layers_teacher=[2, 5, 8, 11]"])
    assert cfg.train.init_drop_layers == (0, 3, 6, 9)
    teacher = load_config(CONFIGS / "mixvit_b_teacher.yaml")
    assert (teacher.model.name, teacher.model.head_type, teacher.train.stage) == ("mixvit", "corner_up", "teacher")


def test_existing_key_and_type_errors(tmp_path):
    path = write(tmp_path / "bad.yaml", "model:\n  dpeth: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "model.dpeth: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match=r"bad2\.yaml: train\.epochs: expected int"):
        load_config(write(tmp_path / "bad2.yaml", "train:\n  epochs: ten\n"))
    with pytest.raises(ConfigError, match=r"--set model\.depth=2\.5: model\.depth: expected int"):
        load_config(None, ["model.depth=2.5"])
    with pytest.raises(ConfigError, match=r"--set test\.datasets=5: test\.datasets: expected a mapping"):
        load_config(None, ["test.datasets=5"])
    with pytest.raises(ConfigError, match=r"--set test\.datasets\.lasot\.search_factor=x: .*expected float"):
        load_config(None, ["test.datasets.lasot.search_factor=x"])


# ------------------------------------------------------------------------------------------ immutability
def test_a_loaded_config_is_immutable_and_variants_come_from_replace():
    cfg = load_config(B)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.depth = 4
    with pytest.raises(TypeError, match="read-only"):
        cfg.test.datasets["lasot"] = cfg.test.datasets["got10k_test"]
    with pytest.raises(TypeError, match="read-only"):
        cfg.data.roots.update(lasot="/x")
    assert isinstance(cfg.data.train_datasets, tuple) and isinstance(cfg.model.image_mean, tuple)
    variant = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, depth=4, image_mean=[0.5, 0.5, 0.5]))
    assert variant.model.depth == 4 and variant.model.image_mean == (0.5, 0.5, 0.5) and cfg.model.depth == 8
    assert pickle.loads(pickle.dumps(cfg)) == cfg and copy.deepcopy(cfg) == cfg
    assert hash(cfg) == hash(copy.deepcopy(cfg))
    with pytest.raises(ConfigError, match=r"^variant: train\.remove_layers: layer 6 does not exist"):
        validate_config(dataclasses.replace(variant, train=dataclasses.replace(cfg.train, remove_layers=(6,))),
                        "variant")


def test_dump_round_trip(tmp_path):
    cfg = load_config(S, ["model.depth=2", "data.roots.coco=/c", "test.datasets.otb100.online_size=3"])
    path = write(tmp_path / "used.yaml", dump_config(cfg))
    assert load_config(path) == cfg
    dumped = yaml.safe_load(path.read_text())
    assert dumped["model"]["depth"] == 2 and dumped["test"]["datasets"]["otb100"]["online_size"] == 3
    assert dumped["data"]["roots"] == {"coco": "/c"} and dumped["data"]["train_ratios"] == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_validate(path):
    cfg = load_config(path)
    assert validate_config(cfg) is cfg
