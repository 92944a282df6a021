"""Ingestion stage: `make_datasets(cfg.data, seed)` -> train/val/test tf.data pipelines + a spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config import DataConfig
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class DataSpec:
    """What the model stage needs to know about the data."""

    input_shape: tuple[int, ...]  # (timesteps, features)
    task: str  # "classification" or "regression"
    output_size: int  # classes for classification, values per step for regression
    sequence_output: bool = False  # targets at every timestep rather than after the last


@dataclass
class Datasets:
    train: Any  # tf.data.Dataset of (x, y) batches
    val: Any
    test: Any
    spec: DataSpec
    # The arrays behind each split (before batching), kept for lineage digests and plots.
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # Where the data came from: a loader name plus its arguments, logged with the run.
    source: dict[str, Any] = field(default_factory=dict)
    # Train-split mean/std used for scaling regression data, to report in original units.
    scaler: dict[str, float] = field(default_factory=dict)

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
    test go in larger batches (`data.eval_batch_size`)."""
    map_fn = extra.pop("map_fn", None)
    pipes = {
        split: to_tf_dataset(
            x,
            y,
            cfg.batch_size if split == "train" else cfg.eval_batch,
            split == "train",
            seed,
            cfg.cache,
            map_fn,
        )
        for split, (x, y) in arrays.items()
    }
    return Datasets(pipes["train"], pipes["val"], pipes["test"], spec, arrays, **extra)


def _toy(cfg: DataConfig, seed: int) -> Datasets:
    x = np.array([[[1], [2], [3], [4]], [[4], [3], [2], [1]]], dtype=np.float32)
    y = np.array([[10], [20]], dtype=np.float32)
    spec = DataSpec(input_shape=(4, 1), task="regression", output_size=1)
    arrays = {split: (x, y) for split in ("train", "val", "test")}
    return build_datasets(arrays, spec, cfg, seed, source={"loader": "toy"})


def make_datasets(cfg: DataConfig, seed: int) -> Datasets:
    """Build the train/val/test pipelines for `cfg.name`; raises DataError on unusable data."""
    from pipeline.data import mnist1d, series, tfds_rows

    loaders = {
        "mnist1d": mnist1d.load,
        "sine": series.load_sine,
        "sunspots": series.load_sunspots,
        "csv": series.load_csv,
        "toy": _toy,
    }
    if cfg.name in loaders:
        return loaders[cfg.name](cfg, seed)
    if hasattr(cfg, "data_dir"):  # any TFDS image dataset
        return tfds_rows.load(cfg, seed)
    raise ConfigError(
        f"Received an invalid value for `data.name`: expected one of {', '.join(loaders)}, "
        f"got {cfg.name!r}. Pick a dataset with `data=NAME`."
    )
