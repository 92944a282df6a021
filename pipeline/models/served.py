"""The MLflow model a run logs, as MLflow's "models from code" file: MLflow copies this file
into the model and runs it when the model loads, so loading needs MLflow, Keras, NumPy and
pandas but not this package (except for its one custom layer, AttentionPooling, when a model
uses it).

It takes raw inputs, in the training data's own layout and units, and answers with what a person
reads, using the Keras model (`servable.keras`: scaling inside) and the layout the training run
wrote into the model's config (`context.model_config`, from Datasets.serving):

- forecast: a table of the series' rows (the `columns`, target first, and the date column if
  the series had one) -> the next `horizon` values after its last row, one row per step, dated
  when it has dates; with `params={"windows": "all"}`, the forecast of every window the table
  holds, beside the values that followed.
- sequences: a long table (one row per step: the id column, the order column if any, the
  feature columns) -> one row per sequence id: the predicted label and each class's probability.
- arrays: an array (n, steps, channels) of raw inputs -> the label and probabilities per row.
- text: raw strings (a list, or a table's text column) -> the label and probabilities per text.

`pipeline.predict` and `mlflow models serve` both call this, so they answer the same.
"""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

BATCH = 1024  # rows per forward pass


def refuse(message: str):
    """An input error: `mlflow models serve` answers it with HTTP 400 and this message."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class Answers:
    """The model's code; RnnModel below makes it an MLflow PythonModel."""

    def load_context(self, context):
        import keras

        try:  # registers AttentionPooling; only a model with `model.pooling=attention` needs it
            import pipeline.models.layers  # noqa: F401
        except ImportError:
            pass
        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.config = dict(context.model_config)

    def predict(self, context, model_input, params=None):
        kind = self.config["kind"]
        if kind == "forecast":
            return self.forecast(table_of(model_input), (params or {}).get("windows", "last"))
        if kind == "sequences":
            return self.classify_sequences(table_of(model_input))
        if kind == "text":
            texts = texts_of(model_input, self.config["text"])
            return self.answer(self.outputs(texts[:, None]), np.arange(len(texts)))
        x = arrays_of(model_input)
        return self.answer(self.outputs(x), np.arange(len(x)))

    # --- the forward pass -----------------------------------------------------------------
    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The Keras model's outputs, in batches through a prefetched tf.data pipeline."""
        import tensorflow as tf

        if len(x) == 0:
            return np.zeros((0, *self.model.output_shape[1:]), dtype=np.float32)
        if x.dtype != object:  # strings (text) go in as they are
            x = x.astype(np.float32)
        if len(x) <= BATCH:
            # One batch: an eager call. `predict` would first trace a tf.function, which costs
            # more than the forward pass itself for a request this small (and for the example
            # every training run predicts when it logs the model).
            return np.asarray(self.model(x, training=False))
        ds = tf.data.Dataset.from_tensor_slices(x)
        ds = ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)
        return np.asarray(self.model.predict(ds, verbose=0))

    def answer(self, probabilities: np.ndarray, ids) -> pd.DataFrame:
        """Labels and probabilities (classification) or the values predicted (regression)."""
        out = pd.DataFrame({self.config.get("id", "row"): ids})  # sequence ids, or array rows
        if self.config["task"] != "classification":
            for k in range(probabilities.shape[-1]):
                out[f"prediction_{k}"] = probabilities.reshape(len(probabilities), -1)[:, k]
            return out
        classes = self.config["classes"]
        out["label"] = [classes[i] for i in probabilities.argmax(axis=-1)]
        for k, name in enumerate(classes):
            out[f"p_{name}"] = probabilities[:, k]
        return out

    # --- forecasts ------------------------------------------------------------------------
    def forecast(self, table: pd.DataFrame, windows: str) -> pd.DataFrame:
        c = self.config
        values = series_values(table, c)
        w, h = c["window"], c["horizon"]
        if windows not in ("last", "all"):
            raise refuse(
                f"`windows` is `last` (the forecast after the series) or `all`, not {windows!r}."
            )
        need = w if windows == "last" else w + h
        if len(values) < need:
            raise refuse(
                f"The series has {len(values)} row(s); this model reads windows of {w} rows"
                + (f" and compares the {h} after them" if windows == "all" else "")
                + f", so it needs at least {need}."
            )
        scaled = values.copy()
        if c["transform"] == "log":
            if (values[:, 0] <= 0).any():
                raise refuse(
                    f"This model forecasts the logarithm of `{c['columns'][0]}`, so it needs "
                    "values above zero, and the series has values at or below zero."
                )
            scaled[:, 0] = np.log(values[:, 0])
        starts = [len(values) - w] if windows == "last" else list(range(len(values) - w - h + 1))
        x = np.stack([scaled[s : s + w] for s in starts])
        pred = self.outputs(x).reshape(len(starts), -1)
        if c["target_mode"] == "sequence":  # the window shifted by h: its last h steps are next
            pred = pred[:, -h:]
        if c["transform"] == "log":
            pred = np.exp(pred)
        rows = np.array(starts)[:, None] + w + np.arange(h)[None, :]  # each forecast's row
        out = pd.DataFrame(
            {"step": np.tile(np.arange(1, h + 1), len(starts)), "forecast": pred.ravel()}
        )
        times = series_times(table, c)
        if times is None:
            out.insert(0, "row", rows.ravel())
        else:
            out.insert(0, c["time"], future_times(times, rows.ravel(), c["frequency"]))
        if windows == "all":
            out["actual"] = values[rows.ravel(), 0]
        return out

    # --- sequences ------------------------------------------------------------------------
    def classify_sequences(self, table: pd.DataFrame) -> pd.DataFrame:
        c = self.config
        need = [c["id"], *([c["order"]] if c["order"] else []), *c["features"]]
        check_columns(table, need)
        if c["order"]:
            table = table.sort_values([c["id"], c["order"]], kind="stable")
        ids, sequences = [], []
        for sid, rows in table.groupby(c["id"], sort=True):
            ids.append(sid)
            sequences.append(numeric(rows, c["features"]))
        if not sequences:
            raise refuse("The table has no rows: give at least one sequence.")
        x = pad(sequences, self.config)
        return self.answer(self.outputs(x), ids)


def table_of(model_input) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict):
        return pd.DataFrame(model_input)
    raise refuse(f"This model takes a table (a DataFrame), not {type(model_input).__name__}.")


def check_columns(table: pd.DataFrame, need: list[str]) -> None:
    absent = [c for c in need if c not in table.columns]
    if absent:
        raise refuse(
            f"The input lacks column(s) {', '.join(absent)}: this model takes the columns "
            f"{', '.join(need)} (it has {', '.join(map(str, table.columns)) or 'none'})."
        )


def numeric(table: pd.DataFrame, columns: list[str]) -> np.ndarray:
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise refuse(
            f"The columns {', '.join(columns)} hold {bad} missing, non-numeric or infinite "
            "value(s). Fill or drop them first (`pipeline.predict` applies the training run's "
            "`data.missing` to a series itself)."
        )
    return values


def series_values(table: pd.DataFrame, c: dict) -> np.ndarray:
    check_columns(table, c["columns"])
    return numeric(table, c["columns"])


def series_times(table: pd.DataFrame, c: dict):
    """The date column parsed as pipeline.data.tables.parse_time parses it in training (this
    file loads without that package, so it has its own copy)."""
    if not c["time"] or c["time"] not in table.columns:
        return None
    text = table[c["time"]].astype(str).str.strip()
    for attempt in (text, text.str.replace(" ", "", regex=False)):  # "1970 Q1" -> "1970Q1"
        try:
            with warnings.catch_warnings():  # "could not infer format": the next try may
                warnings.simplefilter("ignore", UserWarning)
                return pd.DatetimeIndex(pd.to_datetime(attempt))
        except (ValueError, TypeError, OverflowError):
            continue
    raise refuse(f"Column `{c['time']}` holds values that are not dates (first: {text.iloc[0]!r}).")


def date_strings(dates) -> list[str]:
    """Dates as text: just the day where every one is midnight, else the full timestamp.
    (pipeline.data.datasets has the same for the data stage: this file loads without it.)"""
    index = pd.DatetimeIndex(dates)
    if (index == index.normalize()).all():
        return [str(d.date()) for d in index]
    return [str(d) for d in index]


def future_times(times, rows: np.ndarray, frequency: str | None) -> list[str]:
    """The date of each row, continuing past the table's last date at the series' frequency."""
    last = len(times) - 1
    if frequency in (None, "unknown"):
        frequency = pd.infer_freq(times) if len(times) >= 3 else None
    if frequency is None:
        raise refuse("The dates' spacing is unknown, so the forecast's dates cannot be named.")
    ahead = pd.date_range(times[last], periods=int(rows.max()) - last + 1, freq=frequency)
    return date_strings([times[r] if r <= last else ahead[r - last] for r in rows])


def pad(sequences: list[np.ndarray], c: dict) -> np.ndarray:
    """Sequences cut to the training length and padded at the end, as in training."""
    length, shortest = c["length"], min(len(s) for s in sequences)
    if c["pad_value"] is None and shortest < length:
        raise refuse(
            f"This model was trained on sequences of exactly {length} steps and takes no "
            f"shorter ones; the shortest here has {shortest}."
        )
    # A model trained on batches bucketed by length takes any number of steps: no need to pad
    # past the longest sequence given.
    width = min(length, max(len(s) for s in sequences)) if c["bucketed"] else length
    fill = 0.0 if c["pad_value"] is None else c["pad_value"]
    out = np.full((len(sequences), width, len(c["features"])), fill, dtype=np.float32)
    for i, s in enumerate(sequences):
        out[i, : min(len(s), width)] = s[:width]
    return out


def texts_of(model_input, column: str) -> np.ndarray:
    """Raw texts as an object array: a list, an array or Series of strings, or a table's text
    column (or its only column)."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if isinstance(model_input, pd.DataFrame):
        if column in model_input.columns:
            model_input = model_input[column]
        elif len(model_input.columns) == 1:
            model_input = model_input.iloc[:, 0]
        else:
            raise refuse(
                f"The input lacks the text column `{column}` (it has "
                f"{', '.join(map(str, model_input.columns)) or 'none'})."
            )
    if isinstance(model_input, str):
        model_input = [model_input]
    texts = np.asarray(model_input, dtype=object).reshape(-1)
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise refuse(f"This model takes texts (strings); the input holds {type(bad[0]).__name__}.")
    return texts


def arrays_of(model_input) -> np.ndarray:
    """Fixed-shape inputs as float32; their shape is the signature's, which MLflow enforces
    before `predict` (pipeline.inference.inputs explains a wrong one in a file)."""
    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.to_numpy()
    return np.asarray(model_input, dtype=np.float32)


class RnnModel(Answers, mlflow.pyfunc.PythonModel):
    """The MLflow model. `predict` is inherited, not defined here: MLflow wraps a `predict` a
    PythonModel subclass defines itself in its type-hint validation (and warns when it has no
    hints); this model declares its inputs in its signature instead (a table or an array, by
    kind) and checks them itself."""


mlflow.models.set_model(RnnModel())
