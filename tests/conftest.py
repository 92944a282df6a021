"""Shared fixtures: configs composed the way `python -m pipeline.train` composes them, and a
throwaway MLflow store per test so nothing touches the project's mlruns/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import CONF_DIR, register_configs

ROOT = Path(__file__).resolve().parents[1]
register_configs()


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Generated datasets (MNIST-1D) cached once per session, outside the user's home."""
    path = tmp_path_factory.mktemp("data-cache")
    os.environ["RNN_PIPELINE_CACHE"] = str(path)
    return path


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for this test; returns its tracking URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow's process-wide URI too: an earlier test's `mlflow.set_tracking_uri` (pipeline.predict
    # sets it) would otherwise win over the environment for the module-level API.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def on_cpu() -> bool:
    """No GPU visible: the pipeline's defaults then compile with XLA."""
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def default_batch_splits() -> int:
    """What `trainer.batch_splits: null` resolves to for a model without dropout, here."""
    return 2 if on_cpu() and len(os.sched_getaffinity(0)) >= 2 else 1


def make_cfg(*overrides: str):
    """Compose conf/config.yaml with overrides, as the command line would."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def as_overrides(group: str, fields: dict) -> list[str]:
    """{"units": 8, "bidirectional": True} -> ["model.units=8", "model.bidirectional=true"]."""

    def text(value) -> str:
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        return str(value)

    return [f"{group}.{key}={text(value)}" for key, value in fields.items()]


def model_cfg(**fields):
    """The `model` section of a composed, validated config: the YAML's values for `cell`
    (model=<cell>) with `fields` overridden; never the schema's (it has none)."""
    from pipeline.config import validate

    cell = fields.get("cell", "lstm")
    return validate(make_cfg(f"model={cell}", *as_overrides("model", fields))).model


def trainer_cfg(**fields):
    """The `trainer` section of a composed, validated config (trainer=default), `fields` overridden."""
    from pipeline.config import validate

    return validate(make_cfg(*as_overrides("trainer", fields))).trainer


def child_env(extra: dict | None = None) -> dict:
    """The environment for a subprocess running this checkout's code, even when the installed
    copy is another checkout's; `extra` is added."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the OS picks it; closed before we return)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sweeps_together(args: list[str], count: int, cwd: Path, env: dict) -> None:
    """Start `count` processes of `python -m pipeline.train -m ARGS` at once; each must exit 0."""
    command = [sys.executable, "-m", "pipeline.train", "-m", *args]
    sweeps = [
        subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    for sweep in sweeps:
        _, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, err.decode()[-3000:]


def run_cli(
    *args: str,
    env_extra: dict | None = None,
    cwd: Path | None = None,
    timeout=600,
    python_flags: tuple[str, ...] = (),
    env_remove: tuple[str, ...] = (),
):
    """Run `python [FLAGS] -m pipeline.train ARGS` in a subprocess; returns the CompletedProcess."""
    env = child_env(env_extra)
    for name in env_remove:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "pipeline.train", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def runs_in(uri: str, experiment: str = "rnn-pipeline"):
    """All runs of an experiment in the store at uri (empty if the store has none)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.fixture
def tfds_mock(monkeypatch):
    """TFDS's own mock (random images, no files), with our connectivity probe agreeing that the
    mocked dataset can be 'downloaded'; returns a context-manager factory."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr("pipeline.data.tfds_rows._online", lambda *a, **k: True)
    return tfds.testing.mock_data


def sigterm_after(
    args, cwd: Path, line_prefix: str, sig: int = signal.SIGTERM
) -> subprocess.CompletedProcess:
    """Start `python -m pipeline.train ARGS`, send `sig` (SIGTERM) once a line starts with the
    prefix. The signal goes to the training process alone, not to its tracking process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # bounded by the test's timeout
            if line.startswith(line_prefix):
                proc.send_signal(sig)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server for the whole session (tests/servers.py); skips the test
    where no PostgreSQL binaries are installed."""
    from servers import Postgres

    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """A shared-style `mlflow server` on a fresh PostgreSQL database, artifacts served through
    it; stopped after the test. Its `stop()`/`start()` take it away and bring it back."""
    from servers import MlflowServer

    server = MlflowServer(postgres.new_database(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
