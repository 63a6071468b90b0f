"""Config loading: inheritance, strict keys and types, overrides, dumping."""
import pytest
import yaml

from mixformerv2.config import ConfigError, dump_config, load_config


def write(path, text):
    path.write_text(text)
    return path


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model: {depth: 8, num_bins: 96}\ntrain: {lr: 1.0e-4}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel: {depth: 4}\n")
    cfg = load_config(child, ["train.lr=2e-4", "test.datasets={lasot: {search_factor: 4.4}}"])
    assert (cfg.model.depth, cfg.model.num_bins, cfg.train.lr) == (4, 96, 2e-4)
    assert cfg.test.for_dataset("LaSOT").search_factor == 4.4
    assert cfg.test.for_dataset("otb100").search_factor == cfg.test.search_factor


def test_misspelt_key_names_file_and_key(tmp_path):
    path = write(tmp_path / "bad.yaml", "model:\n  dpeth: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "model.dpeth: unknown key" in str(err.value)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path / "bad.yaml", "train:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: train\.epochs: expected int"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"--set model\.depth=2\.5: model\.depth: expected int"):
        load_config(None, ["model.depth=2.5"])


def test_dump_round_trip(tmp_path):
    cfg = load_config(None, ["model.depth=4", "data.train_datasets=[lasot]"])
    dump_config(cfg, tmp_path / "used.yaml")
    again = load_config(tmp_path / "used.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "used.yaml").read_text())["model"]["depth"] == 4
