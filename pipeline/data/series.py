"""Windowed forecasting over one series: sine and sunspots here, tables in pipeline.data.tables.

The series is cut chronologically into train | val | test. A window belongs to the split its
targets fall in; its inputs may reach back into earlier splits (the past is known), never
forward. Scaling statistics come from the training rows alone.
"""

from __future__ import annotations

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import SeriesDataConfig, SineDataConfig
from pipeline.data.datasets import Datasets, DataSpec, build_datasets, date_strings


def split_bounds(n: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Row ranges [start, stop) of each chronological split."""
    test_start = n - int(round(n * test_fraction))
    val_start = test_start - int(round(n * val_fraction))
    return {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, n)}


def make_windows(values, target, cfg: SeriesDataConfig, lo: int, hi: int):
    """Windows whose targets all lie in rows [lo, hi), and the row of each one's first target.

    values: (T, F) inputs; target: (T,) the forecast column.
    next mode: x = rows [s, s+w), y = target rows [s+w, s+w+h).
    sequence mode: x = rows [s, s+w), y = target rows [s+h, s+h+w) (the window shifted by h).
    """
    w, h = cfg.window, cfg.horizon
    if cfg.target_mode == "next":
        first_target, span = w, h
    else:
        first_target, span = h, w
    starts = np.arange(max(0, lo - first_target), hi - first_target - span + 1)
    if len(starts) == 0:
        return None
    x = np.stack([values[s : s + w] for s in starts]).astype(np.float32)
    y = np.stack([target[s + first_target : s + first_target + span] for s in starts])
    y = y.astype(np.float32)
    if cfg.target_mode == "sequence":
        y = y[..., None]
    return x, y, starts + first_target


def windowed(
    values: np.ndarray,
    target_col: int,
    cfg: SeriesDataConfig,
    seed: int,
    source: dict,
    times=None,
    columns: list[str] | None = None,
    **extra,
):
    """Split, scale on train rows, window each split and wrap it as Datasets (`times`: each
    row's date, or None; `columns`: the columns' names, target first; `extra`: more Datasets
    fields, such as the run's tags)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    raw = values
    bounds = split_bounds(len(values), cfg.val_fraction, cfg.test_fraction)
    train_lo, train_hi = bounds["train"]
    train_target = values[train_lo:train_hi, target_col].copy()  # MASE's scale, in the units
    if cfg.transform == "log":
        values = values.copy()
        values[:, target_col] = log_target(values[:, target_col])
    mean = values[train_lo:train_hi].mean(axis=0) if cfg.scale else np.zeros(values.shape[1])
    std = values[train_lo:train_hi].std(axis=0) if cfg.scale else np.ones(values.shape[1])
    std = np.where(std > 0, std, 1.0)  # a constant column stays constant rather than NaN
    scaled = (values - mean) / std
    arrays = {}
    for split, (lo, hi) in bounds.items():
        windows = make_windows(scaled, scaled[:, target_col], cfg, lo, hi)
        if windows is None:
            raise DataError(
                f"The series has {len(values)} rows, too few for `data.window={cfg.window}` and "
                f"`data.horizon={cfg.horizon}`: the {split} split (rows {lo}-{hi}) gets no "
                "complete window. Use a smaller `data.window`, smaller split fractions, or a "
                "longer series."
            )
        arrays[split] = windows[:2]
        if split == "test":
            extra["test_ids"] = windows[2]
            if times is not None:
                extra["test_times"] = np.asarray(times)[windows[2]]
    sequence = cfg.target_mode == "sequence"
    spec = DataSpec(
        input_shape=(cfg.window, values.shape[1]),
        task="regression",
        output_size=1 if sequence else cfg.horizon,
        sequence_output=sequence,
        level=None if cfg.level == "none" else cfg.level,
    )
    scaler = {"mean": float(mean[target_col]), "std": float(std[target_col])}
    if cfg.transform == "log":
        scaler["log"] = True
    columns = columns or ["value"]
    extra.update(forecast_serving(raw, columns, cfg, mean, std, times, extra.get("tags", {})))
    return build_datasets(
        arrays, spec, cfg, seed, source=source, scaler=scaler, train_target=train_target, **extra
    )


def forecast_serving(raw, columns, cfg: SeriesDataConfig, mean, std, times, tags) -> dict:
    """Datasets' serving fields for a forecast: the columns the logged model takes (target
    first, raw units), their training statistics (after `data.transform`), and its example (the
    series' first window of rows)."""
    import pandas as pd

    time = getattr(cfg, "time", None) if times is not None else None
    example = pd.DataFrame(raw[: cfg.window], columns=columns)
    if time:
        example.insert(0, time, date_strings(np.asarray(times)[: cfg.window]))
    serving = {
        "kind": "forecast",
        "columns": list(columns),
        "time": time,
        "frequency": tags.get("data.frequency"),
        "window": cfg.window,
        "horizon": cfg.horizon,
        "target_mode": cfg.target_mode,
        "transform": cfg.transform,
        "missing": getattr(cfg, "missing", "error"),
        "season": getattr(cfg, "season", None),
        "input_mean": mean.tolist(),
        "input_std": std.tolist(),
    }
    return {"serving": serving, "example": example}


def log_target(target: np.ndarray) -> np.ndarray:
    """The target's logarithm (`data.transform=log`), refused for values at or below zero."""
    bad = target <= 0
    if bad.any():
        raise DataError(
            f"`data.transform=log` needs a target above zero, and {int(bad.sum())} value(s) are "
            f"not (first in row {int(bad.argmax()) + 1}: {target[bad.argmax()]:g}). Set "
            "`data.transform=none`, or shift the series above zero first."
        )
    return np.log(target)


def load_sine(cfg: SineDataConfig, seed: int) -> Datasets:
    t = np.arange(cfg.length) * cfg.step
    series = np.sin(t)
    if cfg.noise > 0:
        series = series + np.random.default_rng(seed).normal(0.0, cfg.noise, size=cfg.length)
    source = {
        "loader": "numpy.sin",
        "args": {"length": cfg.length, "step": cfg.step, "noise": cfg.noise, "seed": seed},
    }
    return windowed(series, 0, cfg, seed, source, columns=["value"])


def load_sunspots(cfg: SeriesDataConfig, seed: int) -> Datasets:
    import statsmodels
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    source = {
        "loader": "statsmodels.datasets.sunspots",
        "args": {"statsmodels": statsmodels.__version__, "column": "SUNACTIVITY"},
    }
    values = frame["SUNACTIVITY"].to_numpy()
    return windowed(values, 0, cfg, seed, source, columns=["SUNACTIVITY"])
