"""The tracking process (pipeline/sidecar.py): a run written through it reads back complete,
errors keep their class, and a failed hand-over is a warning rather than a lost run."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import model_logging, tracking
from pipeline.errors import ConfigError
from pipeline.sidecar import RemoteTracker


def test_run_written_through_the_tracking_process_reads_back_complete(store, tmp_path, capfd):
    import keras
    import mlflow

    model = keras.Sequential([keras.Input((6, 2)), keras.layers.GRU(3), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(7, 6, 2)).astype("float32")
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
    remote = RemoteTracker(store)
    try:
        with pytest.raises(ConfigError, match="names no run"):  # the class survives the trip
            remote.resumable_state("no-such-run", {})
        with tracking.open_run(remote, "remote", "r", {"cell": "gru"}, system_metrics=False) as run:
            remote.log_params({"model.units": 3})
            remote.log_metrics({"loss": 0.5}, 0)
            remote.post("log_artifact", str(tmp_path / "missing.txt"))
            labels = np.array([0, 1, 1])
            remote.post(
                "log_pictures", "summary", history, labels, labels, "classification", 2, None
            )
            model_logging.log_model(remote, model, x[:2], tmp_path / "model.keras")
    finally:
        remote.shutdown()
    assert remote._process.returncode == 0

    client = mlflow.MlflowClient(store)
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"model.units": "3"} and got.data.tags["cell"] == "gru"
    assert got.data.metrics["loss"] == 0.5
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    assert "model_summary.txt" in {f.path for f in client.list_artifacts(run.info.run_id)}
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0), rtol=1e-6)
    # The file that was not there: a warning from the tracking process, and the run went on.
    err = capfd.readouterr().err
    assert "Warning: MLflow `log_artifact` failed" in err and "missing.txt" in err


def test_a_failed_hand_over_in_process_is_a_warning(store, capsys):
    with tracking.mlflow_run(store, "local", "r", {}, system_metrics=False) as run:
        run.post("log_artifact", "/no/such/file.png")
        run.log_metrics({"loss": 1.0}, 0)
    assert "Warning: MLflow `log_artifact` failed" in capsys.readouterr().err


def test_unknown_calls_are_refused(store):
    remote = RemoteTracker(store)
    try:
        with pytest.raises(AttributeError):
            remote.shutdown_everything()
        with pytest.raises(AttributeError):
            remote.post("_write", "log_batch")
    finally:
        remote.shutdown()
