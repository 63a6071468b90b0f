from .load import ConfigError, config_to_dict, dump_config, load_config
from .schema import Config, DataConfig, DatasetTestConfig, ModelConfig, TestConfig, TrainConfig

__all__ = ["Config", "ConfigError", "DataConfig", "DatasetTestConfig", "ModelConfig", "TestConfig", "TrainConfig",
           "config_to_dict", "dump_config", "load_config"]
