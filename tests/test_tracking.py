"""Where runs go: the store's location and its override order."""

from __future__ import annotations

from pipeline import tracking


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
