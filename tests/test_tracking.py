"""Where runs go: the store's location and its override order."""

from __future__ import annotations

from pipeline import model_logging, tracking


def test_default_store_is_absolute_sqlite_in_project_mlruns(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tracking.PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    assert uri.startswith("sqlite:////")  # an absolute path: independent of the working dir


def test_env_beats_default_and_config_beats_env(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/env.db")
    assert tracking.resolve_tracking_uri(None) == "sqlite:////tmp/env.db"
    assert tracking.resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_flatten_nested_config():
    flat = tracking.flatten({"model": {"units": 8, "head_units": [4, 2]}, "seed": 1})
    assert flat == {"model.units": 8, "model.head_units": [4, 2], "seed": 1}


def test_experiment_creation_tolerates_existing(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    first = tracking.ensure_experiment(client, "exp", uri)
    assert tracking.ensure_experiment(client, "exp", uri) == first
    assert client.get_experiment(first).artifact_location.endswith("/artifacts/exp")


def test_exception_in_run_ends_failed_with_type_and_message(store):
    import mlflow
    import pytest

    with pytest.raises(ValueError):
        with tracking.mlflow_run(store, "status", "boom", {}, system_metrics=False) as run:
            raise ValueError("loss became NaN at epoch 3")
    finished = mlflow.MlflowClient(store).get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error.type"] == "ValueError"
    assert finished.data.tags["error.message"] == "loss became NaN at epoch 3"
    assert mlflow.active_run() is None


def test_system_metrics_sampled_at_the_configured_interval(store):
    import time

    import mlflow

    with tracking.mlflow_run(store, "sysm", "on", {}, system_metrics_interval=0.2) as on:
        time.sleep(1.5)
    with tracking.mlflow_run(store, "sysm", "off", {}, system_metrics=False) as off:
        time.sleep(0.5)
    client = mlflow.MlflowClient(store)
    samples = client.get_metric_history(on.info.run_id, "system/cpu_utilization_percentage")
    assert len(samples) >= 2  # sampled every 0.2 s, not MLflow's default 10 s
    assert "system/system_memory_usage_megabytes" in client.get_run(on.info.run_id).data.metrics
    assert not [k for k in client.get_run(off.info.run_id).data.metrics if k.startswith("system/")]


def test_logged_model_loads_back_and_predicts_like_the_in_memory_model(store, tmp_path):
    import keras
    import mlflow
    import numpy as np

    model = keras.Sequential([keras.Input((6, 2)), keras.layers.GRU(3), keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(7, 6, 2)).astype("float32")
    with tracking.mlflow_run(store, "models", "m", {}, system_metrics=False) as run:
        uri = model_logging.log_model(run, model, x[:2], tmp_path / "model.keras")
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(uri)
    assert loaded.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 6, 2)
    assert loaded.metadata.flavors["tensorflow"]["model_type"] == "keras"
    assert uri.startswith("models:/")  # MLflow 3: a logged model, linked to the run
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x, verbose=0), rtol=1e-6)
    assert loaded.input_example.shape == (2, 6, 2)


def test_model_folder_is_the_one_mlflow_tensorflow_writes(tmp_path):
    """The tracker writes the MLflow model from the saved .keras file, without TensorFlow
    (pipeline/mlflow_model.py); MLflow's own save_model must write the same folder."""
    import json

    import keras
    import mlflow.tensorflow
    import numpy as np
    import tensorflow as tf
    import yaml
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    from pipeline.mlflow_model import KerasFlavor, KerasModelFiles

    model = keras.Sequential([keras.Input((6, 2)), keras.layers.LSTM(3), keras.layers.Dense(4)])
    x = np.random.default_rng(0).normal(size=(2, 6, 2)).astype("float32")
    model.save(tmp_path / "model.keras")
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    files = KerasModelFiles(
        str(tmp_path / "model.keras"),
        x,
        ("<f4", (-1, 6, 2)),
        ("<f4", (-1, 4)),
        tf.__version__,
        requirements,
    )
    KerasFlavor(files).save_model(str(tmp_path / "ours"), Model())
    spec = [TensorSpec(np.dtype("float32"), shape) for shape in ((-1, 6, 2), (-1, 4))]
    signature = ModelSignature(Schema(spec[:1]), Schema(spec[1:]))
    mlflow.tensorflow.save_model(
        model,
        str(tmp_path / "theirs"),
        signature=signature,
        input_example=x,
        pip_requirements=requirements,
    )

    def listing(folder):
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert listing(ours) == listing(theirs)
    for name in listing(theirs):
        if name == "MLmodel":
            # Differ by nature: the id, the clock, and the zip's timestamps in the size.
            volatile = ("model_uuid", "utc_time_created", "model_size_bytes")
            mine, mlflows = (yaml.safe_load((f / name).read_text()) for f in (ours, theirs))
            assert {k: v for k, v in mine.items() if k not in volatile} == {
                k: v for k, v in mlflows.items() if k not in volatile
            }
        elif name.endswith(".json"):
            assert json.loads((ours / name).read_text()) == json.loads((theirs / name).read_text())
        elif not name.endswith(".keras"):
            assert (ours / name).read_text() == (theirs / name).read_text(), name


def test_best_checkpoint_keeps_the_best_epoch_not_the_last(tmp_path):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    callback = model_logging.best_checkpoint(tmp_path / "best.keras", "val_loss", "min")
    callback.set_model(model)
    weights = {}
    for epoch, val_loss in enumerate([0.9, 0.4, 0.7]):  # epoch 1 is the best
        model.set_weights([np.full((3, 1), float(epoch)), np.zeros(1)])
        weights[epoch] = model.get_weights()
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
    callback.on_train_end()
    saved = keras.saving.load_model(tmp_path / "best.keras")
    np.testing.assert_array_equal(saved.get_weights()[0], weights[1][0])
    np.testing.assert_array_equal(model.get_weights()[0], weights[2][0])  # model left as it was
