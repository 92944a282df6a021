"""Ingestion stage: `make_datasets(cfg.data, seed)` -> train/val/test tf.data pipelines + a spec."""

from __future__ import annotations

import numpy as np

from pipeline.config import DataConfig
from pipeline.config.errors import ConfigError
from pipeline.config.schema import (
    SequencesDataConfig,
    TableSeriesDataConfig,
    TextFileDataConfig,
    TfdsTextDataConfig,
    UeaDataConfig,
)
from pipeline.data import imdb, mnist1d, sequences, series, tables, text_files, tfds_rows, uea
from pipeline.data.datasets import (
    Datasets,
    DataSpec,
    array_serving,
    build_datasets,
    to_tf_dataset,
)

__all__ = ["DataSpec", "Datasets", "build_datasets", "make_datasets", "to_tf_dataset"]


def _toy(cfg: DataConfig, seed: int) -> Datasets:
    x = np.array([[[1], [2], [3], [4]], [[4], [3], [2], [1]]], dtype=np.float32)
    y = np.array([[10], [20]], dtype=np.float32)
    spec = DataSpec(input_shape=(4, 1), task="regression", output_size=1)
    arrays = {split: (x, y) for split in ("train", "val", "test")}
    return build_datasets(arrays, spec, cfg, seed, source={"loader": "toy"}, **array_serving(x))


def make_datasets(cfg: DataConfig, seed: int) -> Datasets:
    """Build the train/val/test pipelines for `cfg.name`; raises DataError on unusable data."""
    loaders = {
        "mnist1d": mnist1d.load,
        "sine": series.load_sine,
        "sunspots": series.load_sunspots,
        "toy": _toy,
    }
    if isinstance(cfg, UeaDataConfig):  # `data.name` is the archive's dataset name
        return uea.load(cfg, seed)
    if isinstance(cfg, TableSeriesDataConfig):  # a user's CSV or a series aeon ships
        return tables.load(cfg, seed)
    if isinstance(cfg, SequencesDataConfig):
        return sequences.load(cfg, seed)
    if isinstance(cfg, TextFileDataConfig):  # a user's labelled texts
        return text_files.load(cfg, seed)
    if isinstance(cfg, TfdsTextDataConfig):  # IMDB reviews
        return imdb.load(cfg, seed)
    if cfg.name in loaders:
        return loaders[cfg.name](cfg, seed)
    if hasattr(cfg, "data_dir"):  # any TFDS image dataset
        return tfds_rows.load(cfg, seed)
    raise ConfigError(
        f"Received an invalid value for `data.name`: expected one of {', '.join(loaders)}, "
        f"got {cfg.name!r}. Pick a dataset with `data=NAME`."
    )
