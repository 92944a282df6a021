"""The MLflow side: where runs go, how a run closes, runs left by dead processes, the model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from pipeline.tracking import store as tracking_store
from pipeline.tracking.runs import (
    HOST_TAG,
    PID_TAG,
    START_TAG,
    flatten,
    mark_dead_runs,
    open_run,
    process_tags,
)


def test_default_store_is_the_projects_mlruns_from_any_subfolder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "mlruns").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(project / "src" / "deep")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        tracking_store.resolve_tracking_uri(None) == f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    )


def test_default_store_outside_a_project_is_mlruns_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "mlruns").mkdir()  # an mlruns/ alone (no pyproject.toml) is not a project
    monkeypatch.chdir(tmp_path / "mlruns")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking_store.resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlruns' / 'mlflow.db'}"
    assert uri.startswith("sqlite:////")  # absolute: a later chdir does not move the store


def test_env_beats_default_and_config_beats_env(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/env.db")
    assert tracking_store.resolve_tracking_uri(None) == "sqlite:////tmp/env.db"
    assert tracking_store.resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_flatten_nested_config():
    flat = flatten({"model": {"units": 8, "head_units": [4, 2]}, "seed": 1})
    assert flat == {"model.units": 8, "model.head_units": [4, 2], "seed": 1}


def test_experiment_creation_tolerates_existing(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    first = tracking_store.ensure_experiment(client, "exp", uri)
    assert tracking_store.ensure_experiment(client, "exp", uri) == first
    assert client.get_experiment(first).artifact_location.endswith("/artifacts/exp")


def test_exception_in_run_ends_failed_with_type_and_message(store):
    import mlflow

    with pytest.raises(ValueError):
        with open_run(store, "status", "boom", {}, system_metrics=False) as run:
            raise ValueError("loss became NaN at epoch 3")
    finished = mlflow.MlflowClient(store).get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error.type"] == "ValueError"
    assert finished.data.tags["error.message"] == "loss became NaN at epoch 3"
    assert finished.data.tags[PID_TAG] == str(os.getpid())
    assert mlflow.active_run() is None


def test_system_metrics_sampled_at_the_configured_interval(store):
    import time

    import mlflow

    with open_run(store, "sysm", "on", {}, system_metrics_interval=0.2) as on:
        time.sleep(1.5)
    with open_run(store, "sysm", "off", {}, system_metrics=False) as off:
        time.sleep(0.5)
    client = mlflow.MlflowClient(store)
    samples = client.get_metric_history(on.info.run_id, "system/cpu_utilization_percentage")
    assert len(samples) >= 2  # sampled every 0.2 s, not MLflow's default 10 s
    assert "system/system_memory_usage_megabytes" in client.get_run(on.info.run_id).data.metrics
    assert not [k for k in client.get_run(off.info.run_id).data.metrics if k.startswith("system/")]


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_runs_of_dead_processes_are_marked_failed_and_live_ones_left_alone(store):
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment = client.create_experiment("dead")
    host = socket.gethostname()
    mine = process_tags()
    runs = {
        "dead": {HOST_TAG: host, PID_TAG: str(dead_pid()), START_TAG: "1.00"},
        # A live pid whose start time differs: the pid was reused by another process.
        "reused": {**mine, START_TAG: "1.00"},
        "alive": mine,
        "other host": {HOST_TAG: "elsewhere", PID_TAG: "1", START_TAG: "1.00"},
    }
    ids = {
        name: client.create_run(experiment, tags=tags).info.run_id for name, tags in runs.items()
    }
    assert sorted(mark_dead_runs(store)) == sorted([ids["dead"], ids["reused"]])
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {
        "dead": "FAILED",
        "reused": "FAILED",
        "alive": "RUNNING",
        "other host": "RUNNING",
    }
    reason = client.get_run(ids["dead"]).data.tags["status_reason"]
    assert runs["dead"][PID_TAG] in reason and "ended without closing the run" in reason
    assert mark_dead_runs(store) == []  # closed once


def test_interrupts_wait_for_a_safe_point_and_a_second_one_goes_through():
    import os
    import signal

    from pipeline.tracking import runs

    previous = {sig: signal.signal(sig, runs._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    steps = []
    try:
        with pytest.raises(runs.Terminated), runs.held_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)  # held: the step goes on
            steps.append("finished")
            runs.raise_held_interrupt()  # the safe point raises it
        assert steps == ["finished"]
        with pytest.raises(KeyboardInterrupt), runs.held_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the user insists: raised at once
            steps.append("not reached")
        assert steps == ["finished"]
        runs.raise_held_interrupt()  # nothing left pending once raised
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
