"""Windowed forecasting over one series: sine, sunspots and a user's CSV.

The series is cut chronologically into train | val | test. A window belongs to the split its
targets fall in; its inputs may reach back into earlier splits (the past is known), never
forward. Scaling statistics come from the training rows alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import CsvDataConfig, SeriesDataConfig, SineDataConfig
from pipeline.data.datasets import Datasets, DataSpec, build_datasets


def split_bounds(n: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Row ranges [start, stop) of each chronological split."""
    test_start = n - int(round(n * test_fraction))
    val_start = test_start - int(round(n * val_fraction))
    return {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, n)}


def make_windows(values, target, cfg: SeriesDataConfig, lo: int, hi: int):
    """Windows whose targets all lie in rows [lo, hi).

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
    return x, y


def windowed(
    values: np.ndarray, target_col: int, cfg: SeriesDataConfig, seed: int, source: dict, **extra
):
    """Split, scale on train rows, window each split and wrap it as Datasets (`extra`: more
    Datasets fields, such as the run's tags)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    bounds = split_bounds(len(values), cfg.val_fraction, cfg.test_fraction)
    train_lo, train_hi = bounds["train"]
    mean = values[train_lo:train_hi].mean(axis=0) if cfg.scale else np.zeros(values.shape[1])
    std = values[train_lo:train_hi].std(axis=0) if cfg.scale else np.ones(values.shape[1])
    std = np.where(std > 0, std, 1.0)  # a constant column stays constant rather than NaN
    scaled = (values - mean) / std
    arrays = {}
    for split, (lo, hi) in bounds.items():
        pair = make_windows(scaled, scaled[:, target_col], cfg, lo, hi)
        if pair is None:
            raise DataError(
                f"The series has {len(values)} rows, too few for `data.window={cfg.window}` and "
                f"`data.horizon={cfg.horizon}`: the {split} split (rows {lo}-{hi}) gets no "
                "complete window. Use a smaller `data.window`, smaller split fractions, or a "
                "longer series."
            )
        arrays[split] = pair
    sequence = cfg.target_mode == "sequence"
    spec = DataSpec(
        input_shape=(cfg.window, values.shape[1]),
        task="regression",
        output_size=1 if sequence else cfg.horizon,
        sequence_output=sequence,
    )
    scaler = {"mean": float(mean[target_col]), "std": float(std[target_col])}
    train_target = values[train_lo:train_hi, target_col].copy()
    return build_datasets(
        arrays, spec, cfg, seed, source=source, scaler=scaler, train_target=train_target, **extra
    )


def load_sine(cfg: SineDataConfig, seed: int) -> Datasets:
    t = np.arange(cfg.length) * cfg.step
    series = np.sin(t)
    if cfg.noise > 0:
        series = series + np.random.default_rng(seed).normal(0.0, cfg.noise, size=cfg.length)
    source = {
        "loader": "numpy.sin",
        "args": {"length": cfg.length, "step": cfg.step, "noise": cfg.noise, "seed": seed},
    }
    return windowed(series, 0, cfg, seed, source)


def load_sunspots(cfg: SeriesDataConfig, seed: int) -> Datasets:
    import statsmodels
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    source = {
        "loader": "statsmodels.datasets.sunspots",
        "args": {"statsmodels": statsmodels.__version__, "column": "SUNACTIVITY"},
    }
    return windowed(frame["SUNACTIVITY"].to_numpy(), 0, cfg, seed, source)


def read_csv(cfg: CsvDataConfig) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Read the target and feature columns as floats, gaps handled as `data.missing` says, or
    say exactly what is wrong. Returns the values, the column names and the gaps' counts."""
    import pandas as pd

    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(
            f"The CSV file `data.path={cfg.path}` does not exist (looked at {path.resolve()}). "
            "Pass the path of an existing file, for example `data.path=/abs/path/series.csv`."
        )
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"The CSV file {path} is empty. Give a file with a header row and one row per time step."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(
            f"The CSV file {path} could not be parsed ({exc}). Check its format."
        ) from None
    columns = [cfg.target] + [c for c in cfg.features if c != cfg.target]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"Column(s) {', '.join(missing)} not found in {path}; it has: "
            f"{', '.join(map(str, frame.columns))}. Set `data.target` and `data.features` to these names."
        )
    if len(frame) == 0:
        raise DataError(f"The CSV file {path} has a header but no rows. Add one row per time step.")
    for col in columns:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            row = int(bad.idxmax())
            raise DataError(
                f"Column `{col}` of {path} holds non-numeric values (first: {frame[col][row]!r} "
                f"in data row {row + 1}). Every target and feature column must hold numbers."
            )
        if numeric.isna().any() and cfg.missing == "error":
            raise DataError(
                f"Column `{col}` of {path} has {int(numeric.isna().sum())} missing value(s) "
                f"(first in data row {int(numeric.isna().idxmax()) + 1}). Fill or drop those rows "
                "first, or set `data.missing` to drop, ffill or interpolate."
            )
        infinite = np.isinf(numeric.to_numpy(dtype=np.float64))
        if infinite.any():
            raise DataError(
                f"Column `{col}` of {path} has {int(infinite.sum())} infinite value(s) (first in "
                f"data row {int(infinite.argmax()) + 1}). Replace or drop those rows first: no "
                "model can learn from them."
            )
        frame[col] = numeric
    frame, counts = fill_missing(frame[columns], cfg.missing)
    if len(frame) == 0:
        raise DataError(
            f"Every row of {path} has a missing value, so `data.missing={cfg.missing}` left none."
        )
    return frame.to_numpy(dtype=np.float64), columns, counts


def fill_missing(frame, policy: str):
    """Apply `data.missing` to empty cells; returns the frame and how many values were filled and
    rows dropped. Filling leaves leading gaps (nothing before them), which are dropped."""
    filled = 0
    if policy in ("ffill", "interpolate"):
        before = int(frame.isna().sum().sum())
        if policy == "interpolate":
            # Linear in the row number between a gap's two neighbours; a trailing gap has no
            # right neighbour, so it keeps the last value.
            frame = frame.interpolate(limit_area="inside")
        frame = frame.ffill()
        filled = before - int(frame.isna().sum().sum())
    rows = len(frame)
    frame = frame.dropna()
    return frame, {"missing_filled": filled, "missing_dropped": rows - len(frame)}


def load_csv(cfg: CsvDataConfig, seed: int) -> Datasets:
    import hashlib

    values, columns, counts = read_csv(cfg)
    path = Path(cfg.path).expanduser().resolve()
    source = {
        "loader": "csv",
        "args": {"path": str(path), "columns": columns, "missing": cfg.missing, **counts},
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    tags = {f"data.{key}": str(n) for key, n in counts.items()}
    return windowed(values, 0, cfg, seed, source, tags=tags)
