"""The data's shape for the model stage (DataSpec), the split pipelines (Datasets), and how
split arrays become batched tf.data pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import DataConfig
from pipeline.config.errors import DataError


@dataclass(frozen=True)
class DataSpec:
    """What the model stage needs to know about the data."""

    input_shape: tuple[int, ...]  # (timesteps, features), or (timesteps,) of token ids for text
    task: str  # "classification" or "regression"
    output_size: int  # classes for classification, values per step for regression
    sequence_output: bool = False  # targets at every timestep rather than after the last
    # Steps whose every channel holds this value are padding, masked by the model (None: none).
    mask_value: float | None = None
    # Per-channel mean and variance of the training steps, for the model's Normalization layer
    # (None: the inputs go in as they are).
    channel_mean: tuple[float, ...] | None = None
    channel_variance: tuple[float, ...] | None = None
    # Forecasting: the model takes each window's level ("last" value or "mean") out of its
    # inputs and adds the target's back to its forecast, so it can follow a trend (None: not).
    level: str | None = None
    # Inputs are multiplied by this inside the model (image pixels: 1/255; None: not scaled).
    input_scale: float | None = None
    # Text: the inputs are token ids below this, 0 the padding, embedded by the model (None: not
    # text).
    vocabulary_size: int | None = None


@dataclass
class Datasets:
    train: Any  # tf.data.Dataset of (x, y) batches
    val: Any  # None without a validation split (`data.val_fraction=0` for the archive's data)
    test: Any
    spec: DataSpec
    # The arrays behind each split (before batching), kept for lineage digests and plots.
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # Where the data came from: a loader name plus its arguments, logged with the run.
    source: dict[str, Any] = field(default_factory=dict)
    # Train-split mean/std used for scaling regression data, to report in original units.
    # ("log": True when the target's logarithm was scaled, `data.transform=log`.)
    scaler: dict[str, Any] = field(default_factory=dict)
    # Forecasting: the target over the training rows, in original units (MASE's scale).
    train_target: np.ndarray | None = None
    # Forecasting with `data.time`: the date of each test window's first target (the plot's x).
    test_times: np.ndarray | None = None
    # Classification: the name of each class index, as the data spells it.
    class_names: list[str] = field(default_factory=list)
    # Facts about the data for the run's tags (lengths, padding, truncation, values filled).
    tags: dict[str, str] = field(default_factory=dict)
    # What a raw input looks like and how it was scaled, for the logged model to take raw
    # inputs (pipeline.models.served): "kind" (forecast, sequences or arrays) and its layout.
    serving: dict[str, Any] = field(default_factory=dict)
    # A few raw inputs as the logged model takes them (its input example): a DataFrame of rows
    # for forecasts and sequence tables, a list of strings for text, an array otherwise.
    example: Any = None
    # The test examples' ids, in the test arrays' order: sequence ids, or for a forecast the row
    # of each window's first target (the test predictions the run logs carry them).
    test_ids: np.ndarray | None = None
    # Text: the tokens, the id of each its index (0 padding, 1 out-of-vocabulary), adapted on the
    # training split; the logged model tokenises raw strings with it.
    vocabulary: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> dict[str, int]:
        return {split: len(x) for split, (x, _) in self.arrays.items()}


def to_tf_dataset(x, y, batch_size: int, shuffle: bool, seed: int, cache: bool, map_fn=None):
    """Slice arrays into a batched, prefetched tf.data pipeline.

    Shuffling happens after `cache` so every epoch sees a new order; `map_fn` runs on whole
    batches (vectorized), not on single examples.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_datasets(arrays, spec: DataSpec, cfg: DataConfig, seed: int, **extra) -> Datasets:
    """Wrap split arrays into Datasets; only the training split is shuffled, and validation and
    test go in larger batches (`data.eval_batch_size`). Non-finite values are refused here,
    before any run opens, whichever source they came from."""
    for split, (x, y) in arrays.items():
        for what, values in (("inputs", x), ("targets", y)):
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                bad = int((~np.isfinite(values)).sum())
                raise DataError(
                    f"The {split} split's {what} hold {bad} NaN or infinite value(s) (after "
                    "scaling, where the data is scaled). Clean the source data, or turn off "
                    "`data.scale` if its values overflow when standardised."
                )
    map_fn = extra.pop("map_fn", None)
    # A source that batches its own way (labelled.py's length buckets) passes
    # `batches(split, x, y, batch_size, shuffle)` -> a tf.data pipeline.
    batches = extra.pop("batches", None)
    if batches is None:

        def batches(split, x, y, batch_size, shuffle):
            return to_tf_dataset(x, y, batch_size, shuffle, seed, cfg.cache, map_fn)

    pipes = {
        split: batches(
            split, x, y, cfg.batch_size if split == "train" else cfg.eval_batch, split == "train"
        )
        for split, (x, y) in arrays.items()
    }
    return Datasets(pipes["train"], pipes.get("val"), pipes["test"], spec, arrays, **extra)


def existing_file(path: str | Path, what: str, fix: str) -> Path:
    """`path` (with `~` expanded) if it is a file, else the DataError every loader gives:
    `what` names the file for the user, `fix` says what to pass instead."""
    found = Path(path).expanduser()
    if not found.is_file():
        raise DataError(f"{what} does not exist (looked at {found.resolve()}). {fix}")
    return found


def check_columns(frame, wanted: list[str], path, keys: str) -> None:
    """Refuse a table lacking any of `wanted`, listing the columns it has and the config
    keys (`keys`, as the message says them) that name columns."""
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DataError(
            f"Column(s) {', '.join(absent)} not found in {path}; it has: "
            f"{', '.join(map(str, frame.columns))}. Set {keys} to these names."
        )


def array_serving(x_test: np.ndarray) -> dict[str, Any]:
    """Datasets' serving fields for inputs of one fixed shape (images read by rows, MNIST-1D):
    the logged model takes an array of raw inputs."""
    return {
        "serving": {"kind": "arrays", "input_shape": list(x_test.shape[1:])},
        "example": x_test[:5],
        "test_ids": np.arange(len(x_test)),
    }


def read_frame(path: Path):
    """A CSV or Parquet file (by its suffix) as a DataFrame, or the DataError naming it."""
    import pandas as pd

    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        return pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many kinds on a bad file
        raise DataError(
            f"{path} could not be read as {'Parquet' if parquet else 'CSV'} "
            f"({type(exc).__name__}: {exc}). Check the file's format."
        ) from None


def date_strings(dates) -> list[str]:
    """Dates as text: just the day where every one is midnight, else the full timestamp (as
    pipeline.models.served writes a forecast's dates, which must load without this package)."""
    import pandas as pd

    index = pd.DatetimeIndex(dates)
    if (index == index.normalize()).all():
        return [str(d.date()) for d in index]
    return [str(d) for d in index]
