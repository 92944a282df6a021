"""Using a trained model: the logged model takes raw inputs and answers in the data's units or
class names; `pipeline.predict` reads new files as training did, matches the run's own test
predictions, dates a forecast, refuses a wrong input, and evaluates in a linked run."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_cfg
from hydra import compose, initialize_config_dir

from pipeline.config import DataError, PipelineError, validate
from pipeline.config.predict import register_predict_config
from pipeline.config.schema import to_objects
from pipeline.data import make_datasets
from pipeline.inference import predict
from pipeline.training.run import run_training

register_predict_config()


def predict_conf(*overrides: str):
    """pipeline/cli/predict.yaml composed with overrides, as `python -m pipeline.predict` does."""
    with initialize_config_dir(str(ROOT / "pipeline" / "cli"), version_base="1.3"):
        return to_objects(compose("predict", overrides=list(overrides)))


def logged_test_predictions(run_id: str) -> pd.DataFrame:
    path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/predictions/test.csv")
    return pd.read_csv(path)


def monthly_series(path, n: int = 120) -> pd.DataFrame:
    """A trending, seasonal monthly series with dates: what a user's sales CSV looks like."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    sales = 100 + 0.8 * t + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n)
    frame = pd.DataFrame(
        {"month": pd.date_range("2010-01-01", periods=n, freq="MS"), "sales": sales}
    )
    frame["month"] = frame["month"].dt.strftime("%Y-%m-%d")
    frame.to_csv(path, index=False)
    return frame


def forecast_overrides(csv) -> list[str]:
    """A smoke forecast of `monthly_series`: 12 months in, the next 3 out."""
    return [
        "data=csv",
        f"data.path={csv}",
        "data.target=sales",
        "data.time=month",
        "data.window=12",
        "data.horizon=3",
        "data.season=12",
        "trainer=smoke",
        "model.units=8",
    ]


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    """One smoke forecast of a dated CSV, in a store of its own, shared by this module's tests."""
    root = tmp_path_factory.mktemp("forecast")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        mlflow.set_tracking_uri(store)  # as the `store` fixture does
        csv = root / "sales.csv"
        series = monthly_series(csv)
        cfg = make_cfg(*forecast_overrides(csv))
        yield run_training(cfg, root / "out"), csv, series, store


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_forecast_is_dated_and_in_the_series_units(forecast_run, tmp_path):
    result, csv, series, _ = forecast_run
    out = tmp_path / "forecast.csv"
    done = predict(
        predict_conf(f"model=runs:/{result.run_id}/model", f"input={csv}", f"output={out}")
    )
    forecast = pd.read_csv(out)
    assert done.rows == 3 and list(forecast.columns) == ["month", "step", "forecast"]
    assert forecast.month.tolist() == ["2020-01-01", "2020-02-01", "2020-03-01"]  # after 2019-12
    # In the series' units (around 190 at the end), not standardised ones (around 0).
    assert (forecast.forecast - series.sales.iloc[-12:].mean()).abs().max() < 60

    # Every window of the series, against the training run's own test predictions.
    every = tmp_path / "every.parquet"
    predict(
        predict_conf(
            f"model=runs:/{result.run_id}/model", f"input={csv}", f"output={every}", "windows=all"
        )
    )
    test = logged_test_predictions(result.run_id)
    merged = test.merge(pd.read_parquet(every), on=["month", "step"], suffixes=("_run", ""))
    assert len(merged) == len(test) == result.sizes["test"] * 3
    np.testing.assert_allclose(merged.forecast, merged.forecast_run, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(merged.actual, merged.actual_run, rtol=1e-6)


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_evaluate_logs_a_run_linked_to_the_model(forecast_run, tmp_path):
    result, csv, _, store = forecast_run
    model = f"runs:/{result.run_id}/model"
    done = predict(
        predict_conf(
            f"model={model}", f"input={csv}", f"output={tmp_path / 'e.csv'}", "evaluate=true"
        )
    )
    client = mlflow.MlflowClient(store)
    run = client.get_run(done.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["evaluation.model_run_id"] == result.run_id
    assert {"rmse", "mae", "mase", "rmse_persistence", "rmse_seasonal_naive"} <= set(
        run.data.metrics
    )
    assert run.data.metrics["rmse"] == pytest.approx(done.metrics["rmse"])
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.name == "sales.csv"
    info = mlflow.models.get_model_info(model)
    linked = {m.key for m in client.get_logged_model(info.model_id).metrics}
    assert "rmse" in linked  # shown on the model's page, beside its training


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_wrong_inputs_are_refused_with_what_was_expected(forecast_run, tmp_path):
    result, csv, series, _ = forecast_run
    model = f"model=runs:/{result.run_id}/model"
    renamed = tmp_path / "renamed.csv"
    series.rename(columns={"sales": "revenue"}).to_csv(renamed, index=False)
    with pytest.raises(DataError, match=r"lacks column\(s\) sales.*revenue"):
        predict(predict_conf(model, f"input={renamed}"))
    short = tmp_path / "short.csv"
    series.head(5).to_csv(short, index=False)
    with pytest.raises(DataError, match="at least 12"):
        predict(predict_conf(model, f"input={short}", f"output={tmp_path / 'x.csv'}"))
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(PipelineError, match="runs:/RUN_ID/model"):
        predict(predict_conf("model=runs:/0123456789abcdef/model", f"input={csv}"))


def long_table(n_ids: int = 40) -> pd.DataFrame:
    """Labelled sequences of 3-9 steps: `rec` ids, `t` order, two channels, string labels."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n_ids):
        label = ("walk", "run")[i % 2]
        for t in range(int(rng.integers(3, 10))):
            speed = (1.0 if label == "walk" else 3.0) + rng.normal(0, 0.3)
            rows.append(dict(rec=f"r{i:02d}", t=t, speed=speed, tilt=rng.normal(), act=label))
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_sequences_match_the_run_and_the_registry_alias(store, tmp_path):
    path = tmp_path / "steps.csv"
    long_table().to_csv(path, index=False)
    cfg = make_cfg(
        "data=sequences",
        f"data.path={path}",
        "data.id=rec",
        "data.label=act",
        "data.order=t",
        "trainer=smoke",
        "model.units=8",
        "tracking.registered_model_name=activity",
    )
    result = run_training(cfg, tmp_path / "out")
    mlflow.MlflowClient(store).set_registered_model_alias("activity", "champion", "1")
    out = tmp_path / "labels.csv"
    done = predict(
        predict_conf("model=models:/activity@champion", f"input={path}", f"output={out}")
    )
    answers = pd.read_csv(out)
    assert done.inputs == 40 and list(answers.columns) == [
        "rec",
        "actual",
        "label",
        "p_run",
        "p_walk",
    ]
    test = logged_test_predictions(result.run_id)
    merged = test.merge(answers, on="rec", suffixes=("_run", ""))
    assert len(merged) == len(test) == result.sizes["test"]
    assert (merged.label == merged.label_run).all() and (merged.actual == merged.actual_run).all()
    np.testing.assert_allclose(merged.p_run, merged.p_run_run, atol=1e-5)
    # The served model answers the same for the same rows, whichever way it is loaded.
    loaded = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    direct = loaded.predict(pd.read_csv(path).drop(columns="act"))
    np.testing.assert_allclose(direct.p_walk, answers.p_walk, atol=1e-6)


@pytest.mark.slow
def test_ts_file_and_evaluation_of_sequence_classes(store, tmp_path):
    from aeon.datasets import load_from_ts_file  # noqa: F401 - the reader behind data=uea

    from pipeline.data.uea import _pair

    cfg = make_cfg("data=uea", "data.name=ItalyPowerDemand", "trainer=smoke", "model.units=8")
    result = run_training(cfg, tmp_path / "out")
    test_file = _pair(validate(cfg).data)[1]
    done = predict(
        predict_conf(
            f"model=runs:/{result.run_id}/model",
            f"input={test_file}",
            f"output={tmp_path / 'p.csv'}",
            "evaluate=true",
        )
    )
    test = logged_test_predictions(result.run_id)
    answers = pd.read_csv(tmp_path / "p.csv")
    assert len(answers) == len(test) == 1029
    assert (answers.label.astype(str) == test.label.astype(str)).all()
    assert done.metrics["accuracy"] == pytest.approx((test.label == test.actual).mean())


@pytest.mark.slow
def test_mnist1d_arrays_and_shapes(store, tmp_path):
    cfg = make_cfg("data=mnist1d", "trainer=smoke", "model.units=8")
    result = run_training(cfg, tmp_path / "out")
    x, y = make_datasets(validate(cfg).data, 42).arrays["test"]
    np.savez(tmp_path / "digits.npz", x=x[..., 0], y=y)  # (n, 40): one channel, squeezed
    done = predict(
        predict_conf(
            f"model=runs:/{result.run_id}/model",
            f"input={tmp_path / 'digits.npz'}",
            f"output={tmp_path / 'p.csv'}",
            "chunk_size=1000",
        )
    )
    answers, test = pd.read_csv(tmp_path / "p.csv"), logged_test_predictions(result.run_id)
    assert done.inputs == len(x) and (answers.row == np.arange(len(x))).all()
    assert (answers.label == test.label).all() and (answers.actual == test.actual).all()
    np.testing.assert_allclose(answers.p_3, test.p_3, atol=1e-5)
    np.save(tmp_path / "wrong.npy", x[:5, :30])
    with pytest.raises(DataError, match=r"shape \(n, 40, 1\).*shape \(5, 30, 1\)"):
        predict(
            predict_conf(f"model=runs:/{result.run_id}/model", f"input={tmp_path / 'wrong.npy'}")
        )


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_the_command_line_explains_bad_input_and_writes_nothing(tmp_path, store):
    import os
    import subprocess
    import sys

    monthly_series(tmp_path / "sales.csv")
    for args, message in [
        (
            ["modle=runs:/x/model", "input=sales.csv"],
            "Unknown config key `modle`. Did you mean `model`?",
        ),
        (
            ["model=runs:/0123456789abcdef/model", "input=sales.csv"],
            "No MLflow model could be loaded",
        ),
        (
            ["model=runs:/x/model", "input=sales.csv", "output=out.txt"],
            "`output`: expected a path ending in .csv",
        ),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.predict", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr
        assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlruns", "sales.csv"]  # nothing written
