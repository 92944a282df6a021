"""TFDS text datasets (`data=imdb`: imdb_reviews): the training split with a stratified share
held out for validation, the test split as it is; labels by TFDS' class names (neg, pos)."""

from __future__ import annotations

import numpy as np

from pipeline.config.schema import TfdsTextDataConfig
from pipeline.data.datasets import Datasets
from pipeline.data.labelled import stratified_split
from pipeline.data.text import text_datasets
from pipeline.data.tfds_rows import prepared_builder


def load(cfg: TfdsTextDataConfig, seed: int) -> Datasets:
    import tensorflow_datasets as tfds

    builder, data_dir = prepared_builder(cfg, kind="text")
    names = builder.info.features["label"].names

    def split(name: str, limit: int | None):
        spec = f"{name}[:{limit}]" if limit else name
        ds = builder.as_dataset(split=spec, as_supervised=True).batch(10_000)
        texts, labels = [], []
        for batch_texts, batch_labels in tfds.as_numpy(ds):
            texts += [t.decode("utf-8", errors="replace") for t in batch_texts]
            labels.append(batch_labels)
        classes = np.array(names)[np.concatenate(labels).astype(int)]
        return np.array(texts, dtype=object), classes, np.arange(len(texts))

    texts, labels, ids = split("train", cfg.max_train_examples)
    train, val = stratified_split(labels, cfg.val_fraction, seed, what="reviews")
    splits = {
        "train": (texts[train], labels[train], ids[train]),
        "val": (texts[val], labels[val], ids[val]),
        "test": split("test", cfg.max_test_examples),
    }
    source = {
        "loader": "tensorflow_datasets",
        "args": {"name": cfg.name, "version": str(builder.info.version), "data_dir": data_dir},
    }
    return text_datasets(splits, cfg, seed, source, {"text": "text", "label": "label"})
