"""Forecast scores: original units, naive baselines, MASE, and a CSV's gaps (`data.missing`)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_cfg, runs_in

from pipeline.config import ConfigError, DataError, validate
from pipeline.data import make_datasets
from pipeline.data.series import split_bounds
from pipeline.training import forecasting


def data_conf(*overrides):
    return validate(make_cfg(*overrides)).data


def test_seasonal_naive_repeats_the_last_season():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(forecasting.seasonal_naive(x, 3, 1), [[4.0, 4.0, 4.0]])
    # season 2: steps 1, 2 take the values 2 before them (3, 4); step 3 repeats step 1's.
    np.testing.assert_array_equal(forecasting.seasonal_naive(x, 3, 2), [[3.0, 4.0, 3.0]])


def test_scores_by_hand():
    x = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 5.0]])  # windows' target column
    y = np.array([[4.0, 6.0], [6.0, 8.0]])
    pred = np.array([[4.0, 5.0], [7.0, 8.0]])  # errors 0, 1, 1, 0
    train_target = np.array([1.0, 3.0, 2.0, 6.0])  # lag-1 steps 2, 1, 4: scale 7/3
    scale = forecasting.mase_scale(train_target, 2)
    out = forecasting.scores(y, pred, x, scale, season=2)
    assert out["test_mae"] == pytest.approx(0.5)
    assert out["test_rmse"] == pytest.approx(np.sqrt(0.5))
    # persistence: [3, 3], [5, 5] -> errors 1, 3, 1, 3
    assert out["test_mae_persistence"] == pytest.approx(2.0)
    assert out["test_rmse_persistence"] == pytest.approx(np.sqrt(5.0))
    # seasonal naive, season 2: [2, 3], [3, 5] -> errors 2, 3, 3, 3
    assert out["test_rmse_seasonal_naive"] == pytest.approx(np.sqrt(31 / 4))
    # MASE with season 2: training lag-2 steps |2-1|, |6-3| -> scale 2.
    assert out["test_mase"] == pytest.approx(0.5 / 2.0)
    assert out["test_rmse_h1"] == pytest.approx(np.sqrt(0.5))
    assert out["test_rmse_h2"] == pytest.approx(np.sqrt(0.5))
    scale = forecasting.mase_scale(train_target, None)
    no_season = forecasting.scores(y, pred, x, scale, season=None)
    assert "test_rmse_seasonal_naive" not in no_season
    assert no_season["test_mase"] == pytest.approx(0.5 / (7 / 3))


def test_mase_scale_is_the_in_sample_naive_mae():
    series = np.array([10.0, 12.0, 11.0, 15.0, 14.0])
    assert forecasting.mase_scale(series, None) == pytest.approx((2 + 1 + 4 + 1) / 4)
    assert forecasting.mase_scale(series, 2) == pytest.approx((1 + 3 + 3) / 3)


def test_forecast_metrics_in_original_units_and_renamed_scaled_scores():
    import keras

    data = make_datasets(data_conf("data=sunspots", "data.horizon=2"), seed=0)
    zeros = keras.Sequential([keras.Input((20, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    zeros.layers[-1].set_weights([np.zeros((20, 2)), np.zeros(2)])
    out = forecasting.forecast_metrics(zeros, data, data.test, season=11)
    # A model predicting 0 in scaled units predicts the training mean in original units.
    _, y = data.arrays["test"]
    y_orig = y * data.scaler["std"] + data.scaler["mean"]
    assert out["test_mae"] == pytest.approx(np.mean(np.abs(y_orig - data.scaler["mean"])), rel=1e-5)
    assert {"test_rmse_h1", "test_rmse_h2", "test_rmse_seasonal_naive", "test_mase"} <= set(out)
    assert out["test_rmse_persistence"] > 10  # sunspot numbers, not standard deviations
    renamed = forecasting.apply({"test_rmse": 0.5, "test_mae": 0.4, "val_rmse": 0.6}, out)
    assert renamed["test_rmse_scaled"] == 0.5 and renamed["val_rmse"] == 0.6
    assert renamed["test_rmse"] == out["test_rmse"]


def test_season_longer_than_the_window_is_refused():
    with pytest.raises(ConfigError, match="data.season"):
        data_conf("data=sunspots", "data.window=8")


def write_gappy_csv(path):
    # value: 1, _, 3, 4, _, _, 7, ... (rows 1, 4, 5 empty), 60 rows in all.
    values = [str(i + 1) if i not in (1, 4, 5) else "" for i in range(60)]
    path.write_text("t,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return path


def csv_data(path, missing):
    cfg = data_conf("data=csv", f"data.path={path}", "data.target=value", f"data.missing={missing}")
    return make_datasets(cfg, seed=0)


@pytest.mark.parametrize(
    ("missing", "filled", "dropped", "first_rows"),
    [
        ("drop", 0, 3, [1, 3, 4, 7]),
        ("ffill", 3, 0, [1, 1, 3, 4, 4, 4, 7]),
        ("interpolate", 3, 0, [1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_csv_missing_values(tmp_path, missing, filled, dropped, first_rows):
    data = csv_data(write_gappy_csv(tmp_path / "gaps.csv"), missing)
    assert data.tags == {"data.missing_filled": str(filled), "data.missing_dropped": str(dropped)}
    assert data.source["args"]["missing"] == missing
    assert data.source["args"]["missing_filled"] == filled
    np.testing.assert_allclose(data.train_target[: len(first_rows)], first_rows)
    assert len(data.train_target) == split_bounds(60 - dropped, 0.15, 0.15)["train"][1]


def test_csv_missing_values_are_refused_by_default(tmp_path):
    with pytest.raises(DataError, match=r"missing value.*`data\.missing`"):
        csv_data(write_gappy_csv(tmp_path / "gaps.csv"), "error")
    with pytest.raises(ConfigError, match="data.missing"):
        data_conf("data=csv", "data.path=x.csv", "data.target=value", "data.missing=zero")


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_train_logs_baselines_and_the_missing_count(store, tmp_path):
    from pipeline.train import train

    path = write_gappy_csv(tmp_path / "gaps.csv")
    metrics = train(
        make_cfg(
            "data=csv",
            f"data.path={path}",
            "data.target=value",
            "data.missing=interpolate",
            "data.window=5",
            "trainer=smoke",
            "model.units=4",
            "tracking.log_model=false",
        ),
        tmp_path / "out",
    )
    assert {"test_rmse_scaled", "test_rmse_persistence", "test_mase"} <= set(metrics)
    [run] = runs_in(store)
    assert {"test_rmse", "test_rmse_persistence", "test_mase"} <= set(run.data.metrics)
    assert run.data.tags["data.missing_filled"] == "3"
    # The series climbs by 1 a row: persistence is off by exactly 1, in the series' units.
    assert run.data.metrics["test_rmse_persistence"] == pytest.approx(1.0)


def test_log_transform_is_undone_for_the_scores(tmp_path):
    import keras

    # Rows 1, 2, 4, 8, ...: in logs a straight line, so persistence is off by a factor of 2.
    path = tmp_path / "growth.csv"
    path.write_text("t,value\n" + "".join(f"{i},{2.0 ** (i / 4)}\n" for i in range(80)))
    cfg = data_conf(
        "data=csv", f"data.path={path}", "data.target=value", "data.transform=log",
        "data.window=4", "data.season=null",
    )  # fmt: skip
    data = make_datasets(cfg, seed=0)
    assert data.scaler["log"] is True
    np.testing.assert_allclose(data.train_target[:3], [1.0, 2**0.25, 2**0.5])  # original units
    zeros = keras.Sequential([keras.Input((4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    zeros.layers[-1].set_weights([np.zeros((4, 1)), np.zeros(1)])
    out = forecasting.forecast_metrics(zeros, data, data.test, season=None)
    _, y = data.arrays["test"]
    y_orig = np.exp(y * data.scaler["std"] + data.scaler["mean"])
    np.testing.assert_allclose(y_orig[0, 0], 2.0 ** ((80 - 12) / 4), rtol=1e-4)
    # Predicting 0 (scaled) is exp(the training rows' mean log), the geometric mean.
    geo = np.exp(data.scaler["mean"])
    assert out["test_mae"] == pytest.approx(np.mean(np.abs(y_orig - geo)), rel=1e-4)
    assert out["test_mae_persistence"] == pytest.approx(np.mean(y_orig * (1 - 2**-0.25)), rel=1e-4)


def test_log_transform_refuses_values_at_or_below_zero(tmp_path):
    path = tmp_path / "signs.csv"
    path.write_text("t,value\n" + "".join(f"{i},{i - 3}\n" for i in range(60)))
    cfg = data_conf(
        "data=csv", f"data.path={path}", "data.target=value", "data.transform=log",
        "data.season=null",
    )  # fmt: skip
    with pytest.raises(DataError, match=r"transform=log.*4 value\(s\).*row 1: -3"):
        make_datasets(cfg, seed=0)
