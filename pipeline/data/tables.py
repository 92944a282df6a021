"""A series read from a table: a user's CSV (`data=csv`) or one aeon ships (`data=airline`,
`lynx`, `shampoo`, `uschange`).

The target and feature columns become floats (empty cells handled as `data.missing` says), an
optional date column (`data.time`) must be sorted and regularly spaced, and the rows are then
windowed like any other series (pipeline.data.series.windowed).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import AeonSeriesDataConfig, CsvDataConfig, TableSeriesDataConfig
from pipeline.data.datasets import Datasets, check_columns, existing_file
from pipeline.data.series import windowed

# name -> (file under aeon/datasets/data, column renames). aeon's loaders (load_airline, ...)
# return bare arrays and drop the dates, so the CSVs it ships beside them are read instead.
AEON_SERIES = {
    "airline": ("Airline/Airline.csv", {}),  # Date, Passengers: monthly, 1949-1960
    "lynx": ("Lynx/Lynx.csv", {"Unnamed: 0": "Year", "0": "Lynx"}),  # yearly, 1821-1934
    "shampoo": ("ShampooSales/ShampooSales.csv", {}),  # Time, Sales: monthly, 3 years
    "uschange": ("Uschange/Uschange.csv", {}),  # Quarter + 5 columns of % changes, 1970-2016
}


def read_table(cfg: TableSeriesDataConfig) -> tuple:
    """The table behind `cfg` and a path naming it in messages."""
    import pandas as pd

    if isinstance(cfg, AeonSeriesDataConfig):
        from importlib.resources import files

        file, renames = AEON_SERIES[cfg.name]
        path = Path(str(files("aeon.datasets") / "data" / file))
        frame = pd.read_csv(path).rename(columns=renames)
        return frame.drop(columns=["Unnamed: 0"], errors="ignore"), path
    path = existing_file(
        cfg.path,
        f"The CSV file `data.path={cfg.path}`",
        "Pass the path of an existing file, for example `data.path=/abs/path/series.csv`.",
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
    return frame, path


def numeric_columns(frame, columns: list[str], missing: str, path):
    """The target and feature columns as floats, or a DataError saying which cell is wrong."""
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for col in columns:
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise DataError(
                f"Column `{col}` of {path} holds non-numeric values (first: "
                f"{frame[col].iloc[row]!r} in data row {row + 1}). Every target and feature "
                "column must hold numbers."
            )
        if numeric.isna().any() and missing == "error":
            raise DataError(
                f"Column `{col}` of {path} has {int(numeric.isna().sum())} missing value(s) "
                f"(first in data row {int(np.argmax(numeric.isna().to_numpy())) + 1}). Fill or "
                "drop those rows first, or set `data.missing` to drop, ffill or interpolate."
            )
        infinite = np.isinf(numeric.to_numpy(dtype=np.float64))
        if infinite.any():
            raise DataError(
                f"Column `{col}` of {path} has {int(infinite.sum())} infinite value(s) (first in "
                f"data row {int(infinite.argmax()) + 1}). Replace or drop those rows first: no "
                "model can learn from them."
            )
        out[col] = numeric
    return out


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


def parse_time(raw, col: str, path):
    """The date column as a DatetimeIndex; years (1821) and quarters (`1970 Q1`) parse too."""
    import pandas as pd

    text = raw.astype("string").str.strip()
    if text.isna().any():
        row = int(np.argmax(text.isna().to_numpy())) + 1
        raise DataError(
            f"Column `data.time={col}` of {path} has no date in data row {row}. Every row needs "
            "one; fill it, or leave `data.time` unset to treat the rows as equally spaced."
        )
    for attempt in (text, text.str.replace(" ", "", regex=False)):  # "1970 Q1" -> "1970Q1"
        try:
            with warnings.catch_warnings():  # "could not infer format": the next try may
                warnings.simplefilter("ignore", UserWarning)
                return pd.DatetimeIndex(pd.to_datetime(attempt))
        except (ValueError, TypeError, OverflowError):
            continue
    row, value = next(
        ((i, v) for i, v in enumerate(text, start=1) if not _is_date(v)), (1, text.iloc[0])
    )
    raise DataError(
        f"Column `data.time={col}` of {path} holds values that are not dates (first: "
        f"{value!r} in data row {row}). Give dates such as 2024-01-31, 2024-01, 2024 or 2024Q1, or leave "
        "`data.time` unset."
    )


def _is_date(value: str) -> bool:
    import pandas as pd

    try:
        pd.to_datetime(value.replace(" ", ""))
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def check_spacing(times, col: str, path) -> str:
    """Refuse dates out of order, repeated or unevenly spaced; returns pandas' frequency alias
    (`MS` for month starts, ...). The first bad pair of rows is named."""
    import pandas as pd

    steps = np.diff(times.asi8)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        what = "repeats" if steps[i] == 0 else "goes back in time"
        raise DataError(
            f"Column `data.time={col}` of {path} {what} at data row {i + 2} ({times[i + 1]} "
            f"after {times[i]}). Sort the file by date and keep one row per date."
        )
    if len(times) < 3:
        return "unknown"
    freq = pd.infer_freq(times)
    if freq is not None:
        return freq
    # The shortest irregular prefix (irregularity only grows with the prefix): its last date
    # breaks the spacing of the rows before it.
    lo, hi = 3, len(times)
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pd.infer_freq(times[:mid]) is None else (mid + 1, hi)
    before = pd.infer_freq(times[: lo - 1]) or "unknown"
    raise DataError(
        f"Column `data.time={col}` of {path} is not evenly spaced: data row {lo} ({times[lo - 1]}) "
        f"follows {times[lo - 2]}, breaking the spacing (`{before}`) of the rows before it. "
        "Windows assume one step between rows: add the missing rows with empty values and set "
        "`data.missing=interpolate`, or leave `data.time` unset to treat the rows as equally spaced."
    )


def read_series(cfg: TableSeriesDataConfig):
    """Values (rows, columns) with the target first, the column names, the dates (or None),
    the table's path and the run's tags."""
    frame, path = read_table(cfg)
    columns = [cfg.target] + [c for c in cfg.features if c != cfg.target]
    wanted = columns + ([cfg.time] if cfg.time else [])
    check_columns(frame, wanted, path, "`data.target`, `data.features` and `data.time`")
    if len(frame) == 0:
        raise DataError(f"The CSV file {path} has a header but no rows. Add one row per time step.")
    values, counts = fill_missing(numeric_columns(frame, columns, cfg.missing, path), cfg.missing)
    if len(values) == 0:
        raise DataError(
            f"Every row of {path} has a missing value, so `data.missing={cfg.missing}` left none."
        )
    tags = {f"data.{key}": str(n) for key, n in counts.items()}
    times = None
    if cfg.time:
        times = parse_time(frame[cfg.time], cfg.time, path)[frame.index.get_indexer(values.index)]
        tags["data.frequency"] = check_spacing(times, cfg.time, path)
        dates_only = bool((times.normalize() == times).all())
        tags["data.start"], tags["data.end"] = (
            str(t.date()) if dates_only else str(t) for t in (times[0], times[-1])
        )
    return values.to_numpy(dtype=np.float64), columns, times, path, {**counts, "tags": tags}


def load(cfg: TableSeriesDataConfig, seed: int) -> Datasets:
    values, columns, times, path, facts = read_series(cfg)
    tags = facts.pop("tags")
    args = {"columns": columns, "time": cfg.time, "missing": cfg.missing, **facts}
    if isinstance(cfg, CsvDataConfig):
        loader, args = "csv", {"path": str(path.resolve()), **args}
    else:
        import aeon

        loader, args = (
            f"aeon.datasets:{AEON_SERIES[cfg.name][0]}",
            {"aeon": aeon.__version__, **args},
        )
    source = {
        "loader": loader,
        "args": args,
        "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    return windowed(values, 0, cfg, seed, source, times=times, columns=columns, tags=tags)
