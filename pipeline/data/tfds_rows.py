"""TFDS image datasets (MNIST, Fashion-MNIST) read row by row: 28 timesteps of 28 pixels."""

from __future__ import annotations

import os

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import TfdsDataConfig
from pipeline.data.datasets import Datasets, DataSpec, array_serving, build_datasets

# What to train on instead, offline, by the kind of data a TFDS dataset holds.
OFFLINE_INSTEAD = {"images": "`data=mnist1d`", "text": "your own texts (`data=text data.path=...`)"}


def _offline_error(name: str, data_dir: str, reason: str, kind: str) -> DataError:
    return DataError(
        f"The TFDS dataset `{name}` is not available in data_dir {data_dir} and could not be "
        f"downloaded ({reason}). Download it once on a machine with internet "
        f"(`python -c \"import tensorflow_datasets as tfds; tfds.load('{name}')\"`) and copy "
        "it there, point `data.data_dir` at a folder that has it, or train offline on "
        f"{OFFLINE_INSTEAD[kind]}."
    )


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """A quick reachability probe: offline, TFDS would retry its downloads for minutes."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _to_float(x, y):
    """Pixels as floats (kept as bytes in memory: a quarter of the size); the model scales them
    to [0, 1] itself (`DataSpec.input_scale`), so the logged model takes raw pixels."""
    import tensorflow as tf

    return tf.cast(x, tf.float32), y


def prepared_builder(cfg, kind: str = "images"):
    """The TFDS builder of `cfg.name` with its data in place (downloaded when it is missing and
    `cfg.download` allows), and its data_dir; a DataError offline. `kind` ("images" or "text")
    picks what the error suggests instead."""
    import tensorflow_datasets as tfds

    data_dir = (
        cfg.data_dir
        or os.environ.get("TFDS_DATA_DIR")
        or os.path.expanduser("~/tensorflow_datasets")
    )
    try:
        builder = tfds.builder(cfg.name, data_dir=data_dir)
    except Exception as exc:  # tfds raises its own DatasetNotFoundError
        known = "`data=imdb`" if kind == "text" else "`data=mnist` or `data=fashion_mnist`"
        raise DataError(
            f"TFDS has no dataset named `{cfg.name}` ({exc}). Use {known}, or train offline on "
            f"{OFFLINE_INSTEAD[kind]}."
        ) from None
    if not builder.is_prepared():
        if not cfg.download:
            raise _offline_error(cfg.name, data_dir, "`data.download=false`", kind)
        if not _online():
            raise _offline_error(cfg.name, data_dir, "this machine cannot reach the internet", kind)
        try:
            builder.download_and_prepare()
        except Exception as exc:  # network errors come in many types
            raise _offline_error(cfg.name, data_dir, type(exc).__name__, kind) from None
    return builder, data_dir


def load(cfg: TfdsDataConfig, seed: int) -> Datasets:
    import tensorflow_datasets as tfds

    builder, data_dir = prepared_builder(cfg)

    def split(name: str, limit: int | None):
        spec = f"{name}[:{limit}]" if limit else name
        # Large batches rather than batch_size=-1, which needs a known cardinality.
        ds = builder.as_dataset(split=spec, as_supervised=True).batch(10_000)
        parts = list(tfds.as_numpy(ds))
        x = np.concatenate([p[0] for p in parts]).reshape(-1, 28, 28).astype(np.uint8)
        return x, np.concatenate([p[1] for p in parts]).astype(np.int32)

    x, y = split("train", cfg.max_train_examples)
    n_val = int(round(len(x) * cfg.val_fraction))
    if n_val < 1 or n_val >= len(x):
        raise DataError(
            f"`data.val_fraction={cfg.val_fraction}` leaves {n_val} of {len(x)} training images "
            "for validation. Choose a fraction that keeps at least one image on each side."
        )
    arrays = {
        "train": (x[:-n_val], y[:-n_val]),
        "val": (x[-n_val:], y[-n_val:]),
        "test": split("test", cfg.max_test_examples),
    }
    num_classes = builder.info.features["label"].num_classes
    spec = DataSpec(
        input_shape=(28, 28),
        task="classification",
        output_size=num_classes,
        input_scale=1 / 255,
    )
    source = {
        "loader": "tensorflow_datasets",
        "args": {"name": cfg.name, "version": str(builder.info.version), "data_dir": data_dir},
    }
    x_test = arrays["test"][0]
    return build_datasets(
        arrays,
        spec,
        cfg,
        seed,
        source=source,
        map_fn=_to_float,
        class_names=builder.info.features["label"].names,
        **array_serving(x_test),
    )
