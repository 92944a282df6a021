"""The config schema: dataclasses registered in Hydra's ConfigStore.

Types and ranges live here; values live in the YAML under `pipeline/conf/`, once each (every
field is MISSING here, so a value the YAML forgot fails loudly instead of a second default
taking over). Hydra merges the YAML onto these classes, so a misspelt key or a wrong type fails
at composition. Ranges are checked in `__post_init__`, which runs when `validate()` turns the
composed config into these objects, before any data is read or any run is opened.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from pipeline.config.errors import ConfigError, invalid_value

# The YAML this schema is filled from, shipped inside the package (a wheel carries it).
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

CELLS = ("simple_rnn", "lstm", "gru")
POOLINGS = ("last", "mean", "attention")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "elu", "gelu", "linear", "hard_sigmoid", "swish")
TARGET_MODES = ("next", "sequence")
LEVELS = ("none", "last", "mean")  # what a forecasting model subtracts from each window
TRANSFORMS = ("none", "log")  # applied to the target before scaling, undone for the scores
MISSING_POLICIES = ("error", "drop", "ffill", "interpolate")
AEON_SERIES = ("airline", "lynx", "shampoo", "uschange")  # pipeline.data.tables reads their files
# How a text is cleaned before it is split into words (keras.layers.TextVectorization's own options).
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", "none")
# How one model spreads over devices (training/distribution.py).
DISTRIBUTIONS = ("none", "mirrored")


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
    batch_size: int = MISSING
    eval_batch_size: int | None = MISSING
    val_fraction: float = MISSING
    cache: bool = MISSING

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
    num_samples: int = MISSING
    train_split: float = MISSING
    generator_seed: int = MISSING
    cache_dir: str | None = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("data.num_samples", self.num_samples, low=20)
        if not 0.0 < self.train_split < 1.0:
            raise invalid_value("data.train_split", "a number in (0, 1)", self.train_split)


@dataclass
class SeriesDataConfig(DataConfig):
    """Windowed forecasting over one series, split chronologically."""

    task: ClassVar[str] = "regression"
    test_fraction: float = MISSING
    window: int = MISSING
    horizon: int = MISSING
    target_mode: str = MISSING
    scale: bool = MISSING
    season: int | None = MISSING  # period of the seasonal-naive baseline and MASE (None: none)
    level: str = MISSING  # each window's level (last value, mean) taken out and added back
    transform: str = MISSING  # the target's transformation before scaling (log: multiplicative)

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
        _check_choice("data.level", self.level, LEVELS)
        _check_choice("data.transform", self.transform, TRANSFORMS)
        if self.season is not None:
            _check_int("data.season", self.season)
            if self.season > self.window:  # the seasonal-naive forecast reads it from the window
                raise invalid_value(
                    "data.season", f"at most `data.window` ({self.window}) or null", self.season
                )


@dataclass
class SineDataConfig(SeriesDataConfig):
    length: int = MISSING
    step: float = MISSING
    noise: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("data.length", self.length)
        if self.step <= 0:
            raise invalid_value("data.step", "a positive number", self.step)
        if self.noise < 0:
            raise invalid_value("data.noise", "a number >= 0", self.noise)


@dataclass
class SunspotsDataConfig(SeriesDataConfig):
    """The yearly sunspot numbers statsmodels ships."""


@dataclass
class TableSeriesDataConfig(SeriesDataConfig):
    """A series read from a table's columns: the target, input features, an optional date
    column and a policy for empty cells."""

    target: str = MISSING
    features: list[str] = MISSING
    time: str | None = MISSING
    missing: str = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("data.missing", self.missing, MISSING_POLICIES)


@dataclass
class CsvDataConfig(TableSeriesDataConfig):
    path: str = MISSING


@dataclass
class AeonSeriesDataConfig(TableSeriesDataConfig):
    """A forecasting series aeon ships in its package (`name`: airline, lynx, shampoo, uschange)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("data.name", self.name, AEON_SERIES)


@dataclass
class UeaDataConfig(DataConfig):
    """Labelled sequences in the UEA/UCR `.ts` format: a dataset aeon ships (`name`), or a
    user's `_TRAIN.ts`/`_TEST.ts` pair (`path`)."""

    path: str | None = MISSING
    max_length: int | None = MISSING
    normalize: bool = MISSING
    bucket_by_length: bool = MISSING  # batch similar lengths together (pipeline/data/buckets.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        # 0: no validation split, every training sequence trains (dl-4-tsc's protocol)
        if not 0.0 <= self.val_fraction < 1.0:
            raise invalid_value("data.val_fraction", "a number in [0, 1)", self.val_fraction)
        if self.max_length is not None:
            _check_int("data.max_length", self.max_length)


@dataclass
class SequencesDataConfig(DataConfig):
    """A user's labelled sequences in one long-format CSV or Parquet table."""

    path: str = MISSING
    id: str = MISSING
    label: str = MISSING
    order: str | None = MISSING
    features: list[str] = MISSING
    group: str | None = MISSING
    test_fraction: float = MISSING
    max_length: int | None = MISSING
    normalize: bool = MISSING
    bucket_by_length: bool = MISSING  # batch similar lengths together (pipeline/data/buckets.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise invalid_value(f"data.{key}", "a number in (0, 1)", getattr(self, key))
        if self.val_fraction + self.test_fraction >= 1.0:
            raise invalid_value(
                "data.val_fraction + data.test_fraction",
                "a sum below 1",
                self.val_fraction + self.test_fraction,
            )
        if self.max_length is not None:
            _check_int("data.max_length", self.max_length)


def _check_tfds_limits(cfg) -> None:
    """A TFDS dataset's `max_train_examples` / `max_test_examples`: null or a positive integer."""
    for key in ("max_train_examples", "max_test_examples"):
        if getattr(cfg, key) is not None:
            _check_int(f"data.{key}", getattr(cfg, key))


@dataclass
class TfdsDataConfig(DataConfig):
    """An image dataset from TFDS, each image's rows read as timesteps."""

    data_dir: str | None = MISSING
    download: bool = MISSING
    max_train_examples: int | None = MISSING
    max_test_examples: int | None = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tfds_limits(self)


@dataclass
class TextDataConfig(DataConfig):
    """Labelled texts, tokenised by a TextVectorization layer adapted on the training split."""

    vocabulary_size: int = MISSING  # tokens kept, the padding and out-of-vocabulary ones included
    max_length: int | None = MISSING
    standardize: str = MISSING
    ngrams: int | None = MISSING
    bucket_by_length: bool = MISSING  # batch similar lengths together (pipeline/data/buckets.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("data.vocabulary_size", self.vocabulary_size, low=3)
        if self.max_length is not None:
            _check_int("data.max_length", self.max_length)
        _check_choice("data.standardize", self.standardize, STANDARDIZE)
        if self.ngrams is not None:
            _check_int("data.ngrams", self.ngrams)
        if not 0.0 < self.val_fraction < 1.0:
            raise invalid_value("data.val_fraction", "a number in (0, 1)", self.val_fraction)


@dataclass
class TextFileDataConfig(TextDataConfig):
    """A user's texts: one row per text in a CSV or Parquet file."""

    path: str = MISSING
    text: str = MISSING
    label: str = MISSING
    test_path: str | None = MISSING
    test_fraction: float = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.test_path is None:
            if not 0.0 < self.test_fraction < 1.0:
                raise invalid_value("data.test_fraction", "a number in (0, 1)", self.test_fraction)
            if self.val_fraction + self.test_fraction >= 1.0:
                raise invalid_value(
                    "data.val_fraction + data.test_fraction",
                    "a sum below 1",
                    self.val_fraction + self.test_fraction,
                )


@dataclass
class TfdsTextDataConfig(TextDataConfig):
    """A text dataset from TFDS (IMDB reviews)."""

    data_dir: str | None = MISSING
    download: bool = MISSING
    max_train_examples: int | None = MISSING
    max_test_examples: int | None = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tfds_limits(self)


@dataclass
class ToyDataConfig(DataConfig):
    """The seed tutorial's two 4-step sequences; train, val and test are the same two."""

    task: ClassVar[str] = "regression"


DATA_SCHEMAS = {
    "mnist1d": Mnist1dDataConfig,
    "sine": SineDataConfig,
    "sunspots": SunspotsDataConfig,
    "csv": CsvDataConfig,
    "aeon_series": AeonSeriesDataConfig,
    "uea": UeaDataConfig,
    "sequences": SequencesDataConfig,
    "tfds": TfdsDataConfig,
    "text": TextFileDataConfig,
    "tfds_text": TfdsTextDataConfig,
    "toy": ToyDataConfig,
}


# --- model, trainer, tracking ------------------------------------------------------------------


@dataclass
class ModelConfig:
    cell: str = MISSING
    units: int = MISSING
    num_layers: int = MISSING
    bidirectional: bool = MISSING
    dropout: float = MISSING
    recurrent_dropout: float = MISSING
    activation: str = MISSING
    recurrent_activation: str = MISSING
    unroll: bool = MISSING
    return_sequences: bool = MISSING
    pooling: str = MISSING
    embedding_dim: int = MISSING  # width of each token's vector (text data only)
    conv_filters: list[int] = MISSING
    conv_kernel: int = MISSING
    head_units: list[int] = MISSING
    head_activation: str = MISSING
    head_dropout: float = MISSING
    # Optimizer settings this cell trains well with; `trainer.learning_rate` / `trainer.clipnorm`
    # override them.
    learning_rate: float = MISSING
    clipnorm: float | None = MISSING

    def __post_init__(self) -> None:
        _check_choice("model.cell", self.cell, CELLS)
        _check_choice("model.pooling", self.pooling, POOLINGS)
        if self.pooling != "last" and self.return_sequences:
            raise ConfigError(
                f"`model.pooling={self.pooling}` pools the steps into one output, and "
                "`model.return_sequences=true` asks for an output at every step. Set "
                "`model.pooling=last` to keep the per-step outputs, or "
                "`model.return_sequences=false` to pool."
            )
        _check_learning_rate("model.learning_rate", self.learning_rate)
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise invalid_value("model.clipnorm", "a positive number or null", self.clipnorm)
        _check_int("model.units", self.units)
        _check_int("model.num_layers", self.num_layers)
        _check_int("model.embedding_dim", self.embedding_dim)
        for key in ("dropout", "recurrent_dropout", "head_dropout"):
            _check_fraction(f"model.{key}", getattr(self, key))
        for key in ("activation", "recurrent_activation", "head_activation"):
            _check_choice(f"model.{key}", getattr(self, key), ACTIVATIONS)
        for units in self.head_units:
            _check_int("model.head_units[]", units)
        for filters in self.conv_filters:
            _check_int("model.conv_filters[]", filters)
        _check_int("model.conv_kernel", self.conv_kernel)


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    optimizer: str = MISSING
    learning_rate: float | None = MISSING
    weight_decay: float = MISSING
    clipnorm: float | None = MISSING
    early_stopping_patience: int | None = MISSING
    lr_plateau_patience: int | None = MISSING
    lr_plateau_factor: float = MISSING
    monitor: str | None = MISSING
    limit_train_batches: int | None = MISSING
    limit_eval_batches: int | None = MISSING
    steps_per_execution: int = MISSING
    jit_compile: bool | None = MISSING
    batch_splits: int | None = MISSING
    fused_lstm: bool | None = MISSING
    mixed_precision: str | None = MISSING
    verbose: int | None = MISSING
    deterministic: bool = MISSING
    distribution: str = MISSING

    def __post_init__(self) -> None:
        _check_int("trainer.epochs", self.epochs)
        _check_choice("trainer.distribution", self.distribution, DISTRIBUTIONS)
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
            xla_off = self.jit_compile is False or self.deterministic or self.distribution != "none"
            if self.batch_splits > 1 and xla_off:
                raise invalid_value(
                    "trainer.batch_splits",
                    "1 or null when XLA is off (trainer.jit_compile=false, "
                    "trainer.deterministic=true or trainer.distribution=mirrored), as each part "
                    "is an XLA call",
                    self.batch_splits,
                )
        for key in ("jit_compile", "fused_lstm"):
            # On two or more replicas (measured on two logical CPUs, Keras 3.15) an XLA step
            # fails in its first call, the hand-written LSTM gradient in its first prediction.
            if getattr(self, key) and self.distribution != "none":
                raise invalid_value(
                    f"trainer.{key}",
                    "null or false with trainer.distribution=mirrored (it does not run on "
                    "several replicas)",
                    getattr(self, key),
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
    uri: str | None = MISSING
    experiment_name: str = MISSING
    run_name: str | None = MISSING
    log_model: bool = MISSING
    registered_model_name: str | None = MISSING
    system_metrics: bool = MISSING
    system_metrics_interval: float = MISSING

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

    storage: str | None = MISSING
    study_name: str | None = MISSING
    trial_number: int | None = MISSING
    parent_run_id: str | None = MISSING
    worker: int | None = MISSING

    def __post_init__(self) -> None:
        if self.worker is not None:
            _check_int("sweep.worker", self.worker, low=0)
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
    seed: int = MISSING
    resume: str | None = MISSING
    optimized_metric: str | None = MISSING
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    trainer: TrainerConfig = MISSING
    tracking: TrackingConfig = MISSING
    sweep: SweepConfig = MISSING


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; YAML files extend them through their defaults."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="data", name=f"{name}_schema", node=schema)


def unknown_keys(node: DictConfig, prefix: str = "") -> list[tuple[str, list[str]]]:
    """(dotted key, the valid keys beside it) for each key the schema does not declare.

    Hydra's `+key=value` adds keys past the schema's struct checks (OmegaConf then keeps a
    top-level one and silently drops a nested one), so they are looked for here.
    """
    found: list[tuple[str, list[str]]] = []
    schema = OmegaConf.get_type(node)
    declared = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key in node.keys():
        dotted = f"{prefix}{key}"
        if declared is not None and key not in declared and key != "hydra":
            found.append((dotted, declared))
            continue
        if OmegaConf.is_missing(node, key):
            continue
        try:
            child = node[key]
        except OmegaConfBaseException:
            continue  # a broken interpolation: to_object below names it
        if isinstance(child, DictConfig):
            found += unknown_keys(child, f"{dotted}.")
    return found


def unknown_key_error(key: str, valid: list[str]) -> ConfigError:
    """The one-paragraph message for a key no schema declares."""
    close = difflib.get_close_matches(key.rpartition(".")[2], valid, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    parent = key.rpartition(".")[0]
    where = f"`{parent}`" if parent else "the top level"
    return ConfigError(
        f"Unknown config key `{key}`.{hint} Valid keys at {where}: {', '.join(valid)}. Fix the "
        "spelling on the command line or in the YAML file (a leading `+` adds a key; the "
        "schema has no place for a new one)."
    )


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into schema objects, raising ConfigError on any bad value."""
    conf = to_objects(cfg)
    if not isinstance(conf.data, DataConfig):
        raise ConfigError(
            "The `data` group is not set to a known dataset. Choose one with `data=NAME` "
            f"(options: {', '.join(n for n in DATA_SCHEMAS if not n.startswith('tfds'))}, mnist, "
            "fashion_mnist, imdb)."
        )
    return conf


def to_objects(cfg: DictConfig):
    """A composed config as its schema's objects (any app's), or one ConfigError paragraph."""
    for key, valid in unknown_keys(cfg):
        raise unknown_key_error(key, valid)
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
    return conf
