"""A user's labelled sequences in one long-format table (CSV or Parquet): one row per time step,
an id column naming the sequence, an optional order column, feature columns and one label per
sequence. Splits are by sequence id, stratified by label and seeded; with `data.group`, every
sequence of one group (a subject, a speaker) stays in one split."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import SequencesDataConfig
from pipeline.data.datasets import Datasets, check_columns, existing_file, read_frame
from pipeline.data.labelled import labelled_datasets, stratified_split


def read_table(cfg: SequencesDataConfig):
    path = existing_file(
        cfg.path, f"The table `data.path={cfg.path}`", "Pass an existing CSV or Parquet file."
    )
    frame = read_frame(path)
    named = [c for c in (cfg.id, cfg.label, cfg.order, cfg.group, *cfg.features) if c]
    keys = "`data.id`, `data.label`, `data.order`, `data.group` and `data.features`"
    check_columns(frame, named, path, keys)
    return path, frame


def feature_columns(cfg: SequencesDataConfig, frame) -> list[str]:
    import pandas as pd

    if cfg.features:
        features = list(cfg.features)
    else:
        skip = {cfg.id, cfg.label, cfg.order, cfg.group}
        features = [
            c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
        ]
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad or not features:
        raise DataError(
            f"Feature column(s) {', '.join(bad) or '(none found)'} of {cfg.path} must hold "
            "numbers. Name the numeric columns in `data.features`, or encode the others as numbers."
        )
    return features


def load(cfg: SequencesDataConfig, seed: int) -> Datasets:
    path, frame = read_table(cfg)
    features = feature_columns(cfg, frame)
    if frame[features].isna().any().any() or not np.isfinite(frame[features].to_numpy(float)).all():
        raise DataError(
            f"The feature columns of {path} hold missing or infinite values. Fill or drop those "
            "rows first."
        )
    if cfg.order:
        frame = frame.sort_values([cfg.id, cfg.order], kind="stable")
    labels_per_id = frame.groupby(cfg.id, sort=True)[cfg.label].nunique(dropna=False)
    disagree = labels_per_id[labels_per_id > 1].index.tolist()
    if disagree:
        raise DataError(
            f"Sequence id(s) {', '.join(map(str, disagree[:10]))} of {path} have rows with "
            f"different labels in `{cfg.label}`. Each sequence needs one label: fix those rows "
            "or check that `data.id` names the sequence column."
        )
    sequences, labels, groups, ids = [], [], [], []
    for sid, rows in frame.groupby(cfg.id, sort=True):  # one pass over the sequences
        ids.append(sid)
        sequences.append(rows[features].to_numpy(np.float64))
        labels.append(str(rows[cfg.label].iloc[0]))
        groups.append(str(rows[cfg.group].iloc[0]) if cfg.group else "")
    labels = np.array(labels)
    groups = np.array(groups) if cfg.group else None
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(f"{path} has a single class ({classes[0]!r}): a classifier needs two.")
    rest, test = stratified_split(labels, cfg.test_fraction, seed, groups)
    share = cfg.val_fraction / (1.0 - cfg.test_fraction)
    keep, val = stratified_split(
        labels[rest], share, seed, None if groups is None else groups[rest]
    )
    train, val = rest[keep], rest[val]
    ids = np.array(ids)
    splits = {
        name: ([sequences[i] for i in index], labels[index], ids[index])
        for name, index in (("train", train), ("val", val), ("test", test))
    }
    source = {
        "loader": "long-format table",
        "args": {"path": str(path.resolve()), "id": cfg.id, "features": features},
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "sequences": len(sequences),
    }
    layout = {"id": cfg.id, "order": cfg.order, "features": features, "label": cfg.label}
    return labelled_datasets(splits, classes, cfg, seed, source, layout)
