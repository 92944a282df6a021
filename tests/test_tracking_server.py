"""A shared MLflow tracking server (`mlflow server` on PostgreSQL, artifacts served through it):
sweep workers logging to it, and runs whose server goes away for a while, or for good. Both
servers are real (tests/servers.py); outages are the server's process group killed."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
from conftest import child_env, runs_in
from optuna.trial import TrialState

from pipeline.sweeps.storage import open_storage

pytestmark = pytest.mark.slow  # every test starts servers and training processes

# Many short epochs, so an outage falls between epochs with plenty of training on either side.
EPOCHS = 40
LONG_RUN = [
    "trainer=smoke",
    f"trainer.epochs={EPOCHS}",
    "trainer.limit_train_batches=20",
    "trainer.verbose=2",
    "model.units=8",
    "tracking.log_model=false",
    "tracking.system_metrics=false",
]


def start_training(args: list[str], cwd, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *args],
        cwd=cwd,
        env=child_env({"PYTHONUNBUFFERED": "1", **env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_epoch(proc: subprocess.Popen, epoch: int) -> None:
    """Read the run's output until Keras starts epoch `epoch` (1-based)."""
    for line in proc.stdout:
        if line.startswith(f"Epoch {epoch}/"):
            return
    pytest.fail(f"training ended before epoch {epoch}:\n{proc.stderr.read()[-3000:]}")


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def logged_steps(uri: str, run_id: str, key: str = "loss") -> list[int]:
    import mlflow

    history = mlflow.MlflowClient(uri).get_metric_history(run_id, key)
    return sorted(m.step for m in history)


def finished_with_every_epoch(proc: subprocess.Popen, err: str, uri: str, epochs: int):
    """The single run in the server's store, FINISHED with a loss logged for every epoch."""
    assert proc.returncode == 0, err[-3000:]
    [run] = runs_in(uri)
    assert run.info.status == "FINISHED"
    assert logged_steps(uri, run.info.run_id) == list(range(epochs))
    return run


def test_sweep_workers_log_to_one_server_and_survive_a_database_restart(
    mlflow_server, postgres, tmp_path
):
    """Two workers, Optuna and MLflow both on PostgreSQL; the database server crashes and comes
    back mid-sweep: every trial is there once, under one parent run, none left RUNNING."""
    storage = postgres.new_database()
    args = [
        "-m",
        "hparams_search=rnn",
        "trainer=smoke",
        "tracking.log_model=false",
        "model.units=choice(4,8)",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_workers=2",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweeper.storage={storage}",
    ]
    sweep = start_training(args, tmp_path, {"MLFLOW_TRACKING_URI": mlflow_server.url})
    try:
        study = None
        while study is None or not study.trials:  # the first trial has been claimed
            time.sleep(1)
            try:
                study = optuna.load_study(study_name="shared", storage=open_storage(storage))
            except KeyError:
                assert sweep.poll() is None, sweep.communicate()[1][-3000:]
        postgres.stop()
        time.sleep(5)  # trials report and beat meanwhile: they wait for the database
        postgres.start()
    finally:
        out, err = finish(sweep, timeout=600)
    assert sweep.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=open_storage(storage)).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    runs = runs_in(mlflow_server.url)
    [parent] = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2", "3"]
    assert {c.data.tags["trial_worker"] for c in children} == {"0", "1"}
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # Artifacts went through the server into its --artifacts-destination.
    assert any((mlflow_server.root / "artifacts").rglob("*.png"))


def test_a_short_outage_is_bridged_by_mlflows_retries(mlflow_server, tmp_path):
    retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, **retries}
    proc = start_training(LONG_RUN, tmp_path, env)
    try:
        wait_for_epoch(proc, 3)
        mlflow_server.stop()
        time.sleep(3)
        mlflow_server.start()
    finally:
        out, err = finish(proc)
    run = finished_with_every_epoch(proc, err, mlflow_server.url, EPOCHS)
    assert "tracking.resent_steps" not in run.data.tags


def test_epochs_missed_in_a_longer_outage_are_sent_again_at_the_end(mlflow_server, tmp_path):
    # No retries: every epoch's write while the server is down fails at once.
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    # Long enough to outlast the server's restart (about 10 s) by far.
    epochs = 2 * EPOCHS
    proc = start_training([*LONG_RUN, f"trainer.epochs={epochs}"], tmp_path, env)
    try:
        wait_for_epoch(proc, 3)
        mlflow_server.stop()
        wait_for_epoch(proc, 6)  # a few epochs logged to nobody
        mlflow_server.start()
    finally:
        out, err = finish(proc)
    run = finished_with_every_epoch(proc, err, mlflow_server.url, epochs)
    resent = [int(s) for s in run.data.tags["tracking.resent_steps"].split(",")]
    assert resent and min(resent) >= 1 and max(resent) < epochs - 1
    assert "were sent again now" in err


def test_a_server_gone_for_good_is_one_error_paragraph(mlflow_server, tmp_path):
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    proc = start_training(LONG_RUN, tmp_path, env)
    try:
        wait_for_epoch(proc, 3)
        mlflow_server.stop()
        started = time.monotonic()
        out, err = finish(proc)
    finally:
        mlflow_server.stop()
    assert proc.returncode != 0
    assert time.monotonic() - started < 120, "the run hung on a server that is gone"
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err[-3000:]
    assert f"The MLflow tracking server at {mlflow_server.url} stopped answering" in errors[0]
    assert "resume=" in errors[0] and "Traceback" not in err
    mlflow_server.start()
    [run] = runs_in(mlflow_server.url)
    assert run.info.status == "RUNNING"  # it could not be closed; the next run marks it FAILED


def test_runs_logging_the_same_new_dataset_at_once_all_get_it(mlflow_server):
    """MLflow's SQL store inserts a new dataset without a lock; on PostgreSQL concurrent runs
    race for it (measured: 3 of 4 fail per round without the retry in lineage.log_inputs)."""
    import threading
    from types import SimpleNamespace

    import mlflow
    import numpy as np

    from pipeline.tracking.lineage import log_datasets

    mlflow.set_tracking_uri(mlflow_server.url)
    experiment = mlflow.MlflowClient().create_experiment("race")
    data = SimpleNamespace(
        arrays={"train": (np.arange(40.0).reshape(10, 4), np.arange(10) % 2)},
        source={"loader": "test"},
        class_names=["a", "b"],
        vocabulary=[],
    )
    together, errors, run_ids = threading.Barrier(4), [], []

    def worker():
        with mlflow.start_run(experiment_id=experiment) as run:  # the active run is per thread
            run_ids.append(run.info.run_id)
            together.wait()
            try:
                log_datasets(data, "same")
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    client = mlflow.MlflowClient()
    for run_id in run_ids:
        [dataset] = client.get_run(run_id).inputs.dataset_inputs
        assert dataset.dataset.name == "same-train"
