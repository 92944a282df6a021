"""The UI: `python -m pipeline.ui` serves the store training writes to, to the API and a browser."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import pytest
from conftest import ROOT, free_port, make_cfg, runs_in
from servers import wait_until_serving
from test_environment import gpus_on_this_machine

from pipeline.cli.ui import server_command
from pipeline.train import train

RUN_NAME = "ui-smoke-run"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A UI on a free port over a fresh store holding one smoke run; stopped afterwards."""
    import mlflow

    tmp = tmp_path_factory.mktemp("ui")
    (tmp / "mlruns").mkdir()
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments()  # create the tables before two processes race
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp / "ui.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.ui", "--port", str(port), "--uri", uri],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server's workers stop with it
        )
    try:
        # Train while the server starts up: both take a while on a small machine.
        smoke = ["trainer=smoke", "model.units=8", f"tracking.run_name={RUN_NAME}"]
        train(make_cfg(*smoke, f"tracking.uri={uri}"), tmp / "out")
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, proc)
        [run] = runs_in(uri)
        yield SimpleNamespace(base=base, run=run, tmp=tmp)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_stops_the_server_and_frees_the_port(tmp_path):
    """SIGTERM to `python -m pipeline.ui` alone (not its process group) stops the server too."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.ui", "--port", str(port), "--uri", uri],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while port_is_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_is_open(port), "the MLflow server still listens after the UI stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_command_serves_artifacts_beside_the_store():
    command = server_command("sqlite:////data/mlruns/mlflow.db", port=5001)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5001"
    assert command[command.index("--artifacts-destination") + 1] == "file:///data/mlruns/artifacts"


@pytest.mark.slow
def test_rest_api_serves_run_params_metrics_tags_and_artifacts(served):
    api, run_id = f"{served.base}/api/2.0/mlflow", served.run.info.run_id
    run = json.loads(get(f"{api}/runs/get?run_id={run_id}"))["run"]
    assert run["info"]["run_name"] == RUN_NAME and run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["model.units"] == "8" and params["trainer.epochs"] == "1"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["gpu.count"] == str(gpus_on_this_machine()) and "version.tensorflow" in tags
    assert {"test_accuracy", "val_loss"} <= {m["key"] for m in run["data"]["metrics"]}
    history = json.loads(get(f"{api}/metrics/get-history?run_id={run_id}&metric_key=val_loss"))
    assert [m["step"] for m in history["metrics"]] == [0]
    listed = json.loads(get(f"{api}/artifacts/list?run_id={run_id}"))
    assert {"config.yaml", "model_summary.txt", "plots"} <= {f["path"] for f in listed["files"]}
    png = get(f"{served.base}/get-artifact?path=plots/learning_curves.png&run_uuid={run_id}")
    assert png[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="no `chromium` binary (Debian package `chromium`; .ci/run installs it)",
)
def test_run_page_renders_in_headless_chromium(served, tmp_path):
    run = served.run
    url = f"{served.base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    screenshot = tmp_path / "run-page.png"
    result = subprocess.run(
        [
            shutil.which("chromium"),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1000",
            "--virtual-time-budget=20000",  # ms of page time for the app's scripts and fetches
            f"--screenshot={screenshot}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    dom = result.stdout
    assert RUN_NAME in dom, result.stderr[-2000:]
    assert "test_accuracy" in dom and "val_loss" in dom
    assert screenshot.read_bytes()[:4] == b"\x89PNG"
