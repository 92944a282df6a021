"""Forecast scores in the series' own units, next to the naive forecasts any model must beat.

Keras scores the test split in scaled units; a forecast is judged in the units of the series and
against persistence (every future step = the window's last value) and seasonal naive (each step
= the value one season before it), on the same windows and horizon. MASE divides the model's
MAE by the in-sample MAE of the seasonal-naive forecast on the training rows (lag = season, or
1), as Hyndman & Koehler (2006), M4 and Darts define it: below 1 beats that naive forecast.
"""

from __future__ import annotations

import numpy as np

# Keras' scores, in scaled units, keep their values under these names.
SCALED = ("rmse", "mae")


def is_forecast(data) -> bool:
    """Regression on the `horizon` values after a window of one series (target_mode=next)."""
    spec = data.spec
    return spec.task == "regression" and not spec.sequence_output and data.train_target is not None


def seasonal_naive(x_target: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Forecasts (n, horizon) from windows' target column (n, window): step k takes the value
    `season` steps before it, repeating the window's last season when k > season; season=1 is
    persistence."""
    steps = np.arange(horizon)
    return x_target[:, -season + steps % season]


def rmse(y: np.ndarray, pred: np.ndarray, axis=None) -> np.ndarray:
    return np.sqrt(np.mean((y - pred) ** 2, axis=axis))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y - pred)))


def mase_scale(train_target: np.ndarray, season: int | None) -> float:
    """In-sample MAE of the seasonal-naive forecast over the training rows (MASE's denominator)."""
    lag = season or 1
    series = np.asarray(train_target, dtype=np.float64)
    return float(np.mean(np.abs(series[lag:] - series[:-lag])))


def scores(
    y: np.ndarray,
    pred: np.ndarray,
    x_target: np.ndarray,
    scale: float,
    season: int | None,
) -> dict[str, float]:
    """Every forecast score from arrays in original units: y and pred (n, horizon), the windows'
    target column x_target (n, window), and MASE's denominator (`mase_scale`)."""
    horizon = y.shape[1]
    out = {"test_rmse": float(rmse(y, pred)), "test_mae": mae(y, pred)}
    persistence = seasonal_naive(x_target, horizon, 1)
    out["test_rmse_persistence"] = float(rmse(y, persistence))
    out["test_mae_persistence"] = mae(y, persistence)
    if season is not None:
        seasonal = seasonal_naive(x_target, horizon, season)
        out["test_rmse_seasonal_naive"] = float(rmse(y, seasonal))
        out["test_mae_seasonal_naive"] = mae(y, seasonal)
    out["test_mase"] = out["test_mae"] / scale if scale > 0 else float("nan")
    if horizon > 1:
        for k, value in enumerate(rmse(y, pred, axis=0), start=1):
            out[f"test_rmse_h{k}"] = float(value)
    return out


def forecast_metrics(model, data, test_ds, season: int | None = None) -> dict[str, float]:
    """The model's forecast scores and its baselines' on `test_ds` (the test split, perhaps
    limited to its first batches), in original units."""
    from pipeline.tracking.pictures import original_units, predict

    pred = predict(model, test_ds)
    n = len(pred)
    x, y = data.arrays["test"][0][:n], data.arrays["test"][1][:n]

    def original(a: np.ndarray) -> np.ndarray:
        return original_units(np.asarray(a).reshape(n, -1), data.scaler)

    # The target is the first input column (pipeline.data.series.windowed).
    scale = mase_scale(data.train_target, season)
    return scores(original(y), original(pred), original(x[..., 0]), scale, season)


def apply(metrics: dict[str, float], forecast: dict[str, float]) -> dict[str, float]:
    """Keras' scaled test_rmse/test_mae renamed to *_scaled, the original-unit scores added."""
    out = {}
    for key, value in metrics.items():
        scaled = key.removeprefix("test_") in SCALED and key.startswith("test_")
        out[f"{key}_scaled" if scaled else key] = value
    return {**out, **forecast}
