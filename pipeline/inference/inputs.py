"""New inputs for a logged model, read from any file format training reads for that kind of
model, and shaped as the model takes them (pipeline.models.served): a series table for a
forecast, a long table for sequences, an array for fixed-shape inputs, a list of texts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config.errors import DataError
from pipeline.data.datasets import date_strings, existing_file, read_frame
from pipeline.data.labelled import long_table
from pipeline.data.tables import check_spacing, fill_missing, numeric_columns, parse_time
from pipeline.data.text import class_labels
from pipeline.data.uea import read_ts

FORMATS = {
    "forecast": (".csv", ".parquet", ".npy"),
    "sequences": (".ts", ".csv", ".parquet", ".npy"),
    "arrays": (".npy", ".npz"),
    "text": (".csv", ".parquet", ".txt"),
}


@dataclass
class Inputs:
    data: Any  # what the model takes: a DataFrame, or an array
    path: Path
    count: int  # inputs: series rows, sequences, or array rows
    labels: np.ndarray | None = (
        None  # classification: each input's true label, if the file has them
    )
    tags: dict[str, str] | None = None  # facts about the input (values filled, rows dropped)


def read(path: str, config: dict) -> Inputs:
    """The file at `path` as the model with this config takes it, or a DataError."""
    kind = config["kind"]
    fix = f"Pass `input=` an existing {'/'.join(FORMATS[kind])} file."
    found = existing_file(path, f"The input file `input={path}`", fix)
    suffix = found.suffix.lower()
    if suffix == ".pq":
        suffix = ".parquet"
    if suffix not in FORMATS[kind]:
        what = {
            "forecast": "a series",
            "sequences": "labelled sequences",
            "arrays": "arrays",
            "text": "texts",
        }
        raise DataError(
            f"`input={path}` is a {suffix or 'suffix-less'} file, and this model (trained on "
            f"{what[kind]}) reads {', '.join(FORMATS[kind])} files. Convert it to one of those."
        )
    if kind == "forecast":
        return series(found, suffix, config)
    if kind == "sequences":
        return sequences(found, suffix, config)
    if kind == "text":
        return texts(found, suffix, config)
    return arrays(found, suffix, config)


def series(path: Path, suffix: str, c: dict) -> Inputs:
    """A series table with the training run's columns; empty cells handled as its
    `data.missing` says, dates (if any) checked for even spacing."""
    import pandas as pd

    columns = c["columns"]
    if suffix == ".npy":
        values = np.load(path, allow_pickle=False)
        values = values.reshape(len(values), -1)
        if values.shape[1] != len(columns):
            raise DataError(
                f"{path} holds {values.shape[1]} column(s) per row; this model reads "
                f"{len(columns)} ({', '.join(columns)}, the target first)."
            )
        frame = pd.DataFrame(values, columns=columns)
    else:
        frame = read_frame(path)
    absent = [col for col in columns if col not in frame.columns]
    if absent:
        raise DataError(
            f"{path} lacks column(s) {', '.join(absent)}. This model forecasts "
            f"`{columns[0]}` from the columns {', '.join(columns)}"
            + (f" (and dates in `{c['time']}`)" if c["time"] else "")
            + f"; the file has {', '.join(map(str, frame.columns))}."
        )
    if len(frame) == 0:
        raise DataError(f"{path} has no rows. Give the series, one row per time step.")
    values, counts = fill_missing(numeric_columns(frame, columns, c["missing"], path), c["missing"])
    out = values.reset_index(drop=True).astype(
        "float64"
    )  # as the model's signature: whole numbers too
    if c["time"] and c["time"] in frame.columns:
        times = parse_time(frame[c["time"]], c["time"], path)[frame.index.get_indexer(values.index)]
        check_spacing(times, c["time"], path)
        out.insert(0, c["time"], date_strings(times))
    tags = {f"input.{key}": str(n) for key, n in counts.items()}
    return Inputs(out, path, len(out), tags=tags)


def sequences(path: Path, suffix: str, c: dict) -> Inputs:
    """Sequences as the long table the model takes, with one label per sequence when the file
    has them (a `.ts` file's labels, or the training table's label column)."""
    features = c["features"]
    layout = {"id": c["id"], "order": c["order"], "features": features}
    if suffix in (".ts", ".npy"):
        if suffix == ".ts":
            seqs, labels = read_ts(path, labelled=False)
        else:
            x = np.load(path, allow_pickle=False)
            seqs, labels = list(x if x.ndim == 3 else x[..., None]), None
        channels = {s.shape[1] for s in seqs}
        if channels != {len(features)}:
            raise DataError(
                f"The sequences of {path} have {', '.join(map(str, sorted(channels)))} "
                f"channel(s); this model reads {len(features)} ({', '.join(features)})."
            )
        table = long_table(seqs, np.arange(len(seqs)), layout)
        return Inputs(table, path, len(seqs), labels)
    table = read_frame(path)
    need = [c["id"], *([c["order"]] if c["order"] else []), *features]
    absent = [col for col in need if col not in table.columns]
    if absent:
        raise DataError(
            f"{path} lacks column(s) {', '.join(absent)}. This model reads one row per step "
            f"with the columns {', '.join(need)} (id, order, features); the file has "
            f"{', '.join(map(str, table.columns))}."
        )
    try:  # as the model's signature: whole numbers too
        table = table.astype({feature: "float64" for feature in features})
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"The feature columns {', '.join(features)} of {path} must hold numbers ({exc})."
        ) from None
    label = c.get("label")
    labels = None
    if label and label in table.columns:
        labels = table.groupby(c["id"], sort=True)[label].first().astype(str).to_numpy()
    return Inputs(table, path, int(table[c["id"]].nunique()), labels)


def arrays(path: Path, suffix: str, c: dict) -> Inputs:
    """An array of raw inputs (`.npy`), or `x` and optional integer labels `y` (`.npz`)."""
    labels = None
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "x" not in archive:
                    raise DataError(
                        f"{path} has arrays {', '.join(archive.files)}; give the inputs as `x` "
                        "(and their labels, for evaluate=true, as `y`)."
                    )
                x = archive["x"]
                y = archive["y"] if "y" in archive else None
        else:
            x, y = np.load(path, allow_pickle=False), None
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} could not be read as a NumPy file ({exc}).") from None
    shape, held = tuple(c["input_shape"]), x.shape
    if x.ndim == len(shape) and x.shape[1:] == shape[:-1] and shape[-1] == 1:
        x = x[..., None]  # (n, steps) for one channel
    if x.shape[1:] != shape:
        raise DataError(
            f"This model takes inputs of shape (n, {', '.join(map(str, shape))}), and {path} "
            f"holds an array of shape {held}. Give one input per row, as in training."
        )
    if y is not None and c["task"] == "classification":
        classes = c["classes"]
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"The labels `y` of {path} must be class numbers 0-{len(classes) - 1}.")
        labels = np.array([classes[int(i)] for i in y.ravel()])
    return Inputs(x, path, len(x), labels)


def texts(path: Path, suffix: str, c: dict) -> Inputs:
    """Texts: a table with the training run's text column (and its label column, if the file
    has one), or a `.txt` file with one text per line."""
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        given = [line for line in lines if line.strip()]
        if not given:
            raise DataError(f"{path} has no text. Give one text per line.")
        return Inputs(given, path, len(given))
    table = read_frame(path)
    column = c["text"]
    if column not in table.columns:
        raise DataError(
            f"{path} lacks the text column `{column}` that this model reads; the file has "
            f"{', '.join(map(str, table.columns))}. Rename the column, or give a .txt file "
            "with one text per line."
        )
    empty = table[column].isna() | table[column].astype(str).str.strip().eq("")
    if empty.any():
        raise DataError(
            f"{int(empty.sum())} row(s) of {path} have no text in `{column}` (the first: row "
            f"{int(empty.to_numpy().argmax())}). Drop or fill those rows."
        )
    given = table[column].astype(str).tolist()
    labels = None
    if c.get("label") and c["label"] in table.columns:
        labels = class_labels(table[c["label"]])
    return Inputs(given, path, len(given), labels)
