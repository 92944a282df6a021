"""The config schema: dataclasses registered in Hydra's ConfigStore.

Hydra merges the YAML in `conf/` onto these classes, so a misspelt key or a wrong type fails
at composition. Ranges are checked in `__post_init__`, which runs when `validate()` turns the
composed config into these objects, before any data is read or any run is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from pipeline.errors import ConfigError, invalid_value

CELLS = ("simple_rnn", "lstm", "gru")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "gelu", "linear", "hard_sigmoid", "swish")
TARGET_MODES = ("next", "sequence")


def _check_int(key: str, value: int, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise invalid_value(key, what, value)


def _check_fraction(key: str, value: float, high_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if high_inclusive else 0.0 <= value < 1.0
    if not ok:
        raise invalid_value(
            key, "a number in [0, 1]" if high_inclusive else "a number in [0, 1)", value
        )


def _check_learning_rate(key: str, value: float) -> None:
    if not 0.0 < value <= 10.0:
        raise invalid_value(key, "a number in (0, 10]", value)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise invalid_value(key, f"one of {', '.join(choices)}", value)


# Evaluation keeps no per-step activations for a backward pass, so batches larger than training's
# fit in memory, and on a CPU larger batches are what spread XLA's matmuls over the cores (from
# about 136 rows): the rows LSTM validates 6,000 samples in 0.26-0.30 s at 512 instead of
# 0.44-0.62 s at 128. Metrics are means over samples, so they do not change.
EVAL_BATCH_FACTOR = 4


# --- data --------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Fields every dataset shares."""

    _key: ClassVar[str] = "data"
    task: ClassVar[str] = "classification"  # what the data asks for; sweeps pick a direction by it
    name: str = MISSING
    batch_size: int = 128
    eval_batch_size: int | None = None  # None: EVAL_BATCH_FACTOR x batch_size
    val_fraction: float = 0.1
    cache: bool = True

    def __post_init__(self) -> None:
        _check_int(f"{self._key}.batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            _check_int(f"{self._key}.eval_batch_size", self.eval_batch_size)
        _check_fraction(f"{self._key}.val_fraction", self.val_fraction)

    @property
    def eval_batch(self) -> int:
        """Examples per validation and test batch."""
        return self.eval_batch_size or EVAL_BATCH_FACTOR * self.batch_size


@dataclass
class Mnist1dDataConfig(DataConfig):
    name: str = "mnist1d"
    num_samples: int = 5000
    train_split: float = 0.8
    generator_seed: int = 42
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("data.num_samples", self.num_samples, low=20)
        if not 0.0 < self.train_split < 1.0:
            raise invalid_value("data.train_split", "a number in (0, 1)", self.train_split)


@dataclass
class SeriesDataConfig(DataConfig):
    """Windowed forecasting over one series, split chronologically."""

    task: ClassVar[str] = "regression"
    batch_size: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    window: int = 20
    horizon: int = 1
    target_mode: str = "next"
    scale: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction("data.test_fraction", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise invalid_value(
                "data.val_fraction + data.test_fraction",
                "a sum below 1",
                self.val_fraction + self.test_fraction,
            )
        _check_int("data.window", self.window)
        _check_int("data.horizon", self.horizon)
        _check_choice("data.target_mode", self.target_mode, TARGET_MODES)


@dataclass
class SineDataConfig(SeriesDataConfig):
    name: str = "sine"
    length: int = 1000
    step: float = 0.1
    noise: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("data.length", self.length)
        if self.step <= 0:
            raise invalid_value("data.step", "a positive number", self.step)
        if self.noise < 0:
            raise invalid_value("data.noise", "a number >= 0", self.noise)


@dataclass
class SunspotsDataConfig(SeriesDataConfig):
    name: str = "sunspots"


@dataclass
class CsvDataConfig(SeriesDataConfig):
    name: str = "csv"
    path: str = MISSING
    target: str = MISSING
    features: list[str] = field(default_factory=list)


@dataclass
class TfdsDataConfig(DataConfig):
    """An image dataset from TFDS, each image's rows read as timesteps."""

    name: str = "mnist"
    data_dir: str | None = None
    download: bool = True
    max_train_examples: int | None = None
    max_test_examples: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("max_train_examples", "max_test_examples"):
            if getattr(self, key) is not None:
                _check_int(f"data.{key}", getattr(self, key))


@dataclass
class ToyDataConfig(DataConfig):
    """The seed tutorial's two 4-step sequences; train, val and test are the same two."""

    task: ClassVar[str] = "regression"
    name: str = "toy"
    batch_size: int = 2


DATA_SCHEMAS = {
    "mnist1d": Mnist1dDataConfig,
    "sine": SineDataConfig,
    "sunspots": SunspotsDataConfig,
    "csv": CsvDataConfig,
    "tfds": TfdsDataConfig,
    "toy": ToyDataConfig,
}


# --- model, trainer, tracking ------------------------------------------------------------------


@dataclass
class ModelConfig:
    cell: str = "lstm"
    units: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    unroll: bool = False
    return_sequences: bool = False
    head_units: list[int] = field(default_factory=list)
    head_activation: str = "relu"
    head_dropout: float = 0.0
    # Optimizer settings this cell trains well with; `trainer.learning_rate` / `trainer.clipnorm`
    # override them.
    learning_rate: float = 1e-3
    clipnorm: float | None = None

    def __post_init__(self) -> None:
        _check_choice("model.cell", self.cell, CELLS)
        _check_learning_rate("model.learning_rate", self.learning_rate)
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise invalid_value("model.clipnorm", "a positive number or null", self.clipnorm)
        _check_int("model.units", self.units)
        _check_int("model.num_layers", self.num_layers)
        for key in ("dropout", "recurrent_dropout", "head_dropout"):
            _check_fraction(f"model.{key}", getattr(self, key))
        for key in ("activation", "recurrent_activation", "head_activation"):
            _check_choice(f"model.{key}", getattr(self, key), ACTIVATIONS)
        for units in self.head_units:
            _check_int("model.head_units[]", units)


@dataclass
class TrainerConfig:
    epochs: int = 100
    optimizer: str = "adam"
    learning_rate: float | None = None
    weight_decay: float = 0.0
    clipnorm: float | None = None
    early_stopping_patience: int | None = 15
    lr_plateau_patience: int | None = 5
    lr_plateau_factor: float = 0.5
    monitor: str | None = None
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    steps_per_execution: int = 32
    jit_compile: bool | None = None
    batch_splits: int | None = None
    fused_lstm: bool | None = None
    mixed_precision: str | None = None
    verbose: int | None = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        _check_int("trainer.epochs", self.epochs)
        _check_choice("trainer.optimizer", self.optimizer, OPTIMIZERS)
        if self.learning_rate is not None:
            _check_learning_rate("trainer.learning_rate", self.learning_rate)
        if self.weight_decay < 0:
            raise invalid_value("trainer.weight_decay", "a number >= 0", self.weight_decay)
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise invalid_value("trainer.clipnorm", "a positive number or null", self.clipnorm)
        if self.early_stopping_patience is not None:
            _check_int("trainer.early_stopping_patience", self.early_stopping_patience, low=0)
        if self.lr_plateau_patience is not None:
            _check_int("trainer.lr_plateau_patience", self.lr_plateau_patience)
        if not 0.0 < self.lr_plateau_factor < 1.0:
            raise invalid_value(
                "trainer.lr_plateau_factor", "a number in (0, 1)", self.lr_plateau_factor
            )
        for key in ("limit_train_batches", "limit_eval_batches"):
            if getattr(self, key) is not None:
                _check_int(f"trainer.{key}", getattr(self, key))
        _check_int("trainer.steps_per_execution", self.steps_per_execution)
        if self.batch_splits is not None:
            _check_int("trainer.batch_splits", self.batch_splits)
            if self.batch_splits > 1 and (self.jit_compile is False or self.deterministic):
                raise invalid_value(
                    "trainer.batch_splits",
                    "1 or null when XLA is off (trainer.jit_compile=false or "
                    "trainer.deterministic=true), as each part is an XLA call",
                    self.batch_splits,
                )
        if self.mixed_precision not in (None, "float32", "mixed_float16", "mixed_bfloat16"):
            raise invalid_value(
                "trainer.mixed_precision",
                "null, mixed_float16 or mixed_bfloat16",
                self.mixed_precision,
            )
        if self.verbose not in (None, 0, 1, 2):
            raise invalid_value("trainer.verbose", "null (auto), 0, 1 or 2", self.verbose)


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment_name: str = "rnn-pipeline"
    run_name: str | None = None
    log_model: bool = True
    registered_model_name: str | None = None
    system_metrics: bool = True
    system_metrics_interval: float = 10.0
    separate_process: bool | None = None

    def __post_init__(self) -> None:
        if not self.experiment_name.strip():
            raise invalid_value(
                "tracking.experiment_name", "a non-empty name", self.experiment_name
            )
        if self.system_metrics_interval <= 0:
            raise invalid_value(
                "tracking.system_metrics_interval",
                "a positive number of seconds",
                self.system_metrics_interval,
            )


@dataclass
class SweepConfig:
    """Which Optuna trial this job is, set by the sweeper; all null outside a sweep."""

    storage: str | None = None
    study_name: str | None = None
    trial_number: int | None = None
    parent_run_id: str | None = None

    def __post_init__(self) -> None:
        if self.trial_number is not None:
            _check_int("sweep.trial_number", self.trial_number, low=0)
            if not (self.storage and self.study_name):
                raise invalid_value(
                    "sweep.storage and sweep.study_name",
                    "both set when sweep.trial_number is set",
                    (self.storage, self.study_name),
                )


@dataclass
class Config:
    seed: int = 42
    resume: str | None = None
    optimized_metric: str | None = None
    data: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files extend them through their defaults."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="data", name=f"{name}_schema", node=schema)


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into schema objects, raising ConfigError on any bad value."""
    try:
        conf = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as exc:
        key = exc.full_key
        raise ConfigError(
            f"The config needs a value for `{key}` and has none. Set it on the command line "
            f"(`{key}=...`) or in the YAML file."
        ) from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        # OmegaConf's message goes on with full_key/object_type lines: keep its first line.
        reason = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(
            f"The config is invalid at `{key}`: {reason}. Fix that value on the command line "
            "or in the YAML file."
        ) from None
    if not isinstance(conf.data, DataConfig):
        raise ConfigError(
            "The `data` group is not set to a known dataset. Choose one with `data=NAME` "
            f"(options: {', '.join(n for n in DATA_SCHEMAS if n != 'tfds')}, mnist, fashion_mnist)."
        )
    return conf
