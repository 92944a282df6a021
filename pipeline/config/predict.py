"""The schema of `python -m pipeline.predict` (pipeline/cli/predict.yaml holds the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from pipeline.config.errors import invalid_value
from pipeline.config.schema import _check_int

OUTPUT_FORMATS = (".csv", ".parquet")


@dataclass
class PredictTrackingConfig:
    uri: str | None = MISSING
    experiment_name: str | None = MISSING


@dataclass
class PredictConfig:
    model: str = MISSING
    input: str = MISSING
    output: str = MISSING
    evaluate: bool = MISSING
    windows: str | None = MISSING
    chunk_size: int = MISSING
    tracking: PredictTrackingConfig = MISSING

    def __post_init__(self) -> None:
        if self.windows not in (None, "last", "all"):
            raise invalid_value("windows", "null, last or all", self.windows)
        if not self.output.lower().endswith(OUTPUT_FORMATS):
            raise invalid_value("output", "a path ending in .csv or .parquet", self.output)
        _check_int("chunk_size", self.chunk_size)
        if not self.model.strip():
            raise invalid_value("model", "a model URI such as runs:/RUN_ID/model", self.model)


def register_predict_config() -> None:
    ConfigStore.instance().store(name="predict_schema", node=PredictConfig)
