"""A user's labelled texts (`data=text`): one row per text in a CSV or Parquet file, a text
column and a label column (strings or numbers); split stratified and seeded, or tested on a
separate file (`data.test_path`)."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import TextFileDataConfig
from pipeline.data.datasets import Datasets, check_columns, existing_file, read_frame
from pipeline.data.labelled import stratified_split
from pipeline.data.text import class_labels, text_datasets


def read_texts(path, cfg: TextFileDataConfig):
    """(texts, string labels, the rows' numbers in the file, rows dropped): rows without a
    text or a label are left out; a file with none left is refused."""
    frame = read_frame(path)
    check_columns(frame, [cfg.text, cfg.label], path, "`data.text` and `data.label`")
    text = frame[cfg.text]
    keep = text.notna() & text.astype(str).str.strip().ne("") & frame[cfg.label].notna()
    if not keep.any():
        raise DataError(
            f"{path} has no row with both a text in `{cfg.text}` and a label in `{cfg.label}` "
            f"({len(frame)} row(s), every one empty in one of them). Check that `data.text` and "
            "`data.label` name the right columns."
        )
    rows = np.flatnonzero(keep.to_numpy())
    texts = text[keep].astype(str).to_numpy(dtype=object)
    return texts, class_labels(frame.loc[keep, cfg.label]), rows, int((~keep).sum())


def load(cfg: TextFileDataConfig, seed: int) -> Datasets:
    fix = "Pass an existing CSV or Parquet file, one row per text."
    path = existing_file(cfg.path, f"The text file `data.path={cfg.path}`", fix)
    texts, labels, rows, dropped = read_texts(path, cfg)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(
            f"{path} has a single class ({classes[0]!r}) in `{cfg.label}`: a classifier needs two "
            "or more. Check that `data.label` names the label column."
        )
    source = {
        "loader": "text table",
        "args": {"path": str(path.resolve()), "text": cfg.text, "label": cfg.label},
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "texts": len(texts),
    }
    if cfg.test_path:
        fix = (
            "Pass an existing CSV or Parquet file with the same columns, or `data.test_path=null`."
        )
        test_path = existing_file(
            cfg.test_path, f"The test file `data.test_path={cfg.test_path}`", fix
        )
        test = read_texts(test_path, cfg)
        dropped += test[3]
        train, val = stratified_split(labels, cfg.val_fraction, seed, what="texts")
        source["args"]["test_path"] = str(test_path.resolve())
        source["test_file_sha256"] = hashlib.sha256(test_path.read_bytes()).hexdigest()
    else:
        rest, held = stratified_split(labels, cfg.test_fraction, seed, what="texts")
        share = cfg.val_fraction / (1.0 - cfg.test_fraction)
        keep, val = stratified_split(labels[rest], share, seed, what="texts")
        train, val = rest[keep], rest[val]
        test = (texts[held], labels[held], rows[held])
    splits = {
        "train": (texts[train], labels[train], rows[train]),
        "val": (texts[val], labels[val], rows[val]),
        "test": test[:3],
    }
    data = text_datasets(splits, cfg, seed, source, {"text": cfg.text, "label": cfg.label})
    data.tags["data.dropped_rows"] = str(dropped)  # without a text or a label
    return data
