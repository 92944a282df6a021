"""Training stage end to end: one FINISHED MLflow run per train(), presets, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_cfg, run_cli, runs_in

from pipeline.train import train


def artifact_paths(uri, run_id):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    return {a.path for a in client.list_artifacts(run_id)}


def test_train_classification_logs_one_finished_run(store, tmp_path):
    import keras
    import mlflow

    metrics = train(make_cfg("trainer=smoke", "model.units=16"), output_dir=tmp_path / "out")
    assert {"test_accuracy", "test_loss", "val_accuracy", "epochs_trained"} <= set(metrics)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_trained"] == 1
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.units"] == "16" and run.data.params["data.name"] == "mnist1d"
    assert run.data.params["trainer.epochs"] == "1"
    assert {"accuracy", "val_accuracy", "loss", "learning_rate", "test_accuracy"} <= set(
        run.data.metrics
    )
    history = mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [0]
    assert {"config.yaml", "model.keras"} <= artifact_paths(store, run.info.run_id)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model.keras", tracking_uri=store
    )
    assert keras.saving.load_model(local).count_params() == metrics["num_params"]


def test_train_regression_reports_rmse(store, tmp_path):
    metrics = train(
        make_cfg("trainer=smoke", "data=sunspots", "model=gru", "model.units=8"), tmp_path
    )
    assert {"test_rmse", "test_mae", "val_loss"} <= set(metrics)
    [run] = runs_in(store)
    assert run.data.tags["task"] == "regression" and run.info.status == "FINISHED"


def test_early_stopping_restores_best_epoch(store, tmp_path):
    metrics = train(
        make_cfg(
            "data=sine",
            "model.units=4",
            "trainer.epochs=6",
            "trainer.early_stopping_patience=1",
            "trainer.learning_rate=5",
            "trainer.optimizer=sgd",
        ),
        tmp_path,
    )
    # A huge learning rate diverges fast: training stops early and keeps the best epoch's numbers.
    assert metrics["epochs_trained"] <= 6
    assert metrics["best_epoch"] < metrics["epochs_trained"]


@pytest.mark.parametrize(
    "preset",
    ["toy_simple_rnn", "sine_simple_rnn", "sequence_lstm", "mnist_rows_lstm", "mnist_two_lstm"],
)
def test_experiment_presets_run(store, tmp_path, preset):
    import tensorflow_datasets as tfds

    overrides = [
        f"experiment={preset}",
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_eval_batches=1",
        "trainer.early_stopping_patience=null",
    ]
    with tfds.testing.mock_data(num_examples=64):  # MNIST presets read mock images, offline
        metrics = train(make_cfg(*overrides), tmp_path)
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and metrics["epochs_trained"] == 1


def test_cli_smoke_run_end_to_end(store, tmp_path):
    result = run_cli("trainer=smoke", "model=gru", "model.units=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test" in result.stdout and "accuracy=" in result.stdout
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.params["model.cell"] == "gru"
    assert {"test_accuracy", "val_accuracy"} <= set(run.data.metrics)
    assert "model.keras" in artifact_paths(store, run.info.run_id)
    # Hydra wrote the run folder under the working directory it was started from.
    assert list((tmp_path / "outputs").glob("*/*/.hydra/config.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.units=-3"], "`model.units`: expected a positive integer, got -3"),
        (["modle=lstm"], "Unknown config key `modle`. Did you mean `model`?"),
        (["model=transformer"], "Unknown option `transformer` for the config group `model`"),
        (["trainer.epochs=abc"], "`trainer.epochs`: expected integer"),
        (["data=csv", "data.path=/nonexistent/series.csv", "data.target=value"], "does not exist"),
        (["data=csv", "data.path={bad}", "data.target=value"], "non-numeric"),
        (["data=csv", "data.path={short}", "data.target=value"], "too few"),
    ],
)
def test_bad_input_exits_nonzero_and_leaves_store_untouched(tmp_path, args, message):
    bad = write(tmp_path / "bad.csv", "t,value\n0,1\n1,x\n")
    short = write(tmp_path / "short.csv", "t,value\n" + "".join(f"{i},{i}\n" for i in range(10)))
    args = [a.format(bad=bad, short=short) for a in args]
    db = tmp_path / "store" / "mlflow.db"
    result = run_cli(*args, env_extra={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists() and not (tmp_path / "outputs").exists()
