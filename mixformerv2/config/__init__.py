"""Typed, frozen configuration: schema (``schema.py``), YAML loading and overrides (``load.py``), rules
(``validate.py``). Imports nothing else from the package except the dataset-name table ``data/names.py``."""
from .errors import ConfigError
from .load import apply_overrides, config_to_dict, dump_config, load_config, parse_override, shadowed_overrides
from .schema import (IMAGENET_MEAN, IMAGENET_STD, Config, DataConfig, DatasetTestConfig, FrozenDict, ModelConfig,
                     TestConfig, TrainConfig)
from .validate import Problem, config_problems, validate_config

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Config", "ConfigError", "DataConfig", "DatasetTestConfig", "FrozenDict",
           "ModelConfig", "Problem", "TestConfig", "TrainConfig", "apply_overrides", "config_problems",
           "config_to_dict", "dump_config", "load_config", "parse_override", "shadowed_overrides",
           "validate_config"]
