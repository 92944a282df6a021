"""Series from tables: aeon's shipped series (data=airline, lynx, shampoo, uschange) and a
user's CSV with a date column (`data.time`): parsing, spacing checks, dates in the plot."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_cfg, runs_in

from pipeline.config import ConfigError, DataError, validate
from pipeline.data import make_datasets


def data_conf(*overrides):
    return validate(make_cfg(*overrides)).data


@pytest.mark.parametrize(
    ("name", "rows", "channels", "frequency", "start", "end"),
    [
        ("airline", 144, 1, "MS", "1949-01-01", "1960-12-01"),
        ("lynx", 114, 1, "YS-JAN", "1821-01-01", "1934-01-01"),
        ("shampoo", 36, 1, "MS", "1991-01-01", "1993-12-01"),
        ("uschange", 187, 5, "QS-OCT", "1970-01-01", "2016-07-01"),
    ],
)
def test_shipped_series_load_offline_with_their_dates(name, rows, channels, frequency, start, end):
    data = make_datasets(data_conf(f"data={name}"), seed=0)
    assert data.tags["data.frequency"] == frequency
    assert (data.tags["data.start"], data.tags["data.end"]) == (start, end)
    assert data.spec.input_shape[1] == channels
    # Each row is the target of at most one window per split; the last rows are the test's.
    assert sum(data.sizes.values()) == rows - data.spec.input_shape[0]
    assert str(data.test_times[-1])[:10] == end
    assert data.source["loader"].startswith("aeon.datasets:")


def test_uschange_forecasts_consumption_from_all_five_columns():
    data = make_datasets(data_conf("data=uschange"), seed=0)
    assert data.source["args"]["columns"] == [
        "Consumption",
        "Income",
        "Production",
        "Savings",
        "Unemployment",
    ]
    # The target is the first input column: its last value in a window precedes the target.
    x, y = data.arrays["train"]
    np.testing.assert_allclose(x[1:, -1, 0], y[:-1, 0], rtol=1e-6)


def test_unknown_shipped_series_is_refused():
    with pytest.raises(ConfigError, match="`data.name`.*airline, lynx, shampoo, uschange"):
        data_conf("data=airline", "data.name=sunspot")


def write_dated(path, dates, values=None):
    values = values if values is not None else range(len(dates))
    path.write_text(
        "when,value\n" + "".join(f"{d},{v}\n" for d, v in zip(dates, values, strict=False))
    )
    return path


def dated(path, *extra):
    cfg = data_conf(
        "data=csv", f"data.path={path}", "data.target=value", "data.time=when", "data.window=4",
        "data.season=null", *extra,
    )  # fmt: skip
    return make_datasets(cfg, seed=0)


def weeks(n, start="2024-01-01"):
    import pandas as pd

    return [d.date().isoformat() for d in pd.date_range(start, periods=n, freq="W-MON")]


def test_csv_dates_give_the_frequency_and_the_test_windows_dates(tmp_path):
    dates = weeks(60)
    data = dated(write_dated(tmp_path / "w.csv", dates))
    assert data.tags["data.frequency"] == "W-MON"
    assert (data.tags["data.start"], data.tags["data.end"]) == (dates[0], dates[-1])
    # The first test window's first target is row 60 - 9 (test_fraction 0.15 of 60 rows).
    assert str(data.test_times[0])[:10] == dates[60 - 9]
    assert len(data.test_times) == data.sizes["test"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda d: d[:10] + d[11:],
            r"not evenly spaced: data row 11 \(2024-03-18.*follows 2024-03-04",
        ),
        (lambda d: d[:5] + [d[6], d[5]] + d[7:], "goes back in time at data row 7"),
        (lambda d: d[:5] + [d[4]] + d[6:], "repeats at data row 6"),
        (lambda d: d[:3] + ["soon"] + d[4:], "not dates \\(first: .soon. in data row 4"),
        (lambda d: d[:3] + [""] + d[4:], "no date in data row 4"),
    ],
)
def test_bad_dates_are_explained(tmp_path, edit, match):
    dates = edit(weeks(60))
    with pytest.raises(DataError, match=match):
        dated(write_dated(tmp_path / "w.csv", dates))


def test_dropped_rows_with_dates_must_keep_the_spacing(tmp_path):
    values = [str(i) if i != 20 else "" for i in range(60)]
    path = write_dated(tmp_path / "w.csv", weeks(60), values)
    with pytest.raises(DataError, match="not evenly spaced.*data.missing=interpolate"):
        dated(path, "data.missing=drop")
    filled = dated(path, "data.missing=interpolate")
    assert filled.tags["data.missing_filled"] == "1"


def test_quarters_and_years_parse(tmp_path):
    quarters = [f"{1990 + i // 4} Q{i % 4 + 1}" for i in range(40)]
    assert dated(write_dated(tmp_path / "q.csv", quarters)).tags["data.frequency"] == "QS-OCT"
    years = [str(1900 + i) for i in range(40)]
    assert dated(write_dated(tmp_path / "y.csv", years)).tags["data.start"] == "1900-01-01"


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_train_on_a_shipped_series_logs_dates_baselines_and_the_dated_plot(store, tmp_path):
    from pipeline.train import train

    metrics = train(
        make_cfg("data=airline", "trainer=smoke", "model.units=4", "tracking.log_model=false"),
        tmp_path / "out",
    )
    assert {"test_rmse", "test_rmse_persistence", "test_rmse_seasonal_naive", "test_mase"} <= set(
        metrics
    )
    [run] = runs_in(store)
    assert run.data.tags["data.frequency"] == "MS"
    assert run.data.metrics["test_rmse_persistence"] > 10  # passengers (thousands), not z-scores
    import mlflow

    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert "plots/predicted_vs_actual.png" in names


@pytest.mark.parametrize(
    ("series", "level", "extra"),
    [
        ("airline", "last", ["data.horizon=3"]),
        ("uschange", "mean", []),  # five channels: the target's level goes back on
        ("sine", "last", ["data.target_mode=sequence"]),
    ],
)
def test_a_window_shifted_by_c_gives_a_forecast_shifted_by_c(series, level, extra, tmp_path):
    import keras

    from pipeline.models import build_model

    conf = validate(make_cfg(f"data={series}", f"data.level={level}", "model.units=8", *extra))
    data = make_datasets(conf.data, seed=0)
    model = build_model(conf.model, data.spec)
    x = data.arrays["test"][0][:4]
    np.testing.assert_allclose(np.asarray(model(x + 5.0)) - np.asarray(model(x)), 5.0, atol=1e-4)
    model.save(tmp_path / "m.keras")  # Keras' own layers only: loads without this package
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6)


def test_without_a_level_the_forecast_does_not_follow_a_shift():
    from pipeline.models import build_model

    conf = validate(make_cfg("data=airline", "data.level=none", "model.units=8"))
    data = make_datasets(conf.data, seed=0)
    model = build_model(conf.model, data.spec)
    x = data.arrays["test"][0][:4]
    assert np.abs(np.asarray(model(x + 5.0)) - np.asarray(model(x)) - 5.0).max() > 1.0
