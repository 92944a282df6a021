"""The config stage: the schema every composed config is checked against, and its errors."""

from pipeline.config.errors import ConfigError, DataError, PipelineError, invalid_value
from pipeline.config.schema import (
    CONF_DIR,
    Config,
    DataConfig,
    ModelConfig,
    TrainerConfig,
    register_configs,
    validate,
)

__all__ = [
    "CONF_DIR",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ModelConfig",
    "PipelineError",
    "TrainerConfig",
    "invalid_value",
    "register_configs",
    "validate",
]
