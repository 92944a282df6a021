"""The REST endpoint: `mlflow models serve` on a trained run's model answers POST /invocations
with the same forecast `pipeline.predict` writes, for the same series, and a text model with the
probabilities it gives loaded in Python, for the same raw strings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pandas as pd
import pytest
from conftest import make_cfg
from servers import wait_until_serving
from test_predict import forecast_overrides, monthly_series, predict_conf
from test_text import reviews, text_overrides

from pipeline.inference import predict
from pipeline.training.run import run_training


def post(base: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def model_server(run_id: str, store: str, port: int, cwd):
    """`mlflow models serve` on a run's model, on 127.0.0.1:port; yields its base URL."""
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run_id}/model"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        command,
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers go with it
    )
    try:
        wait_until_serving(base, server, path="/ping")
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_served_model_answers_as_pipeline_predict(store, tmp_path, free_tcp_port):
    csv = tmp_path / "sales.csv"
    series = monthly_series(csv)
    cfg = make_cfg(*forecast_overrides(csv))
    run_id = run_training(cfg, tmp_path / "out").run_id
    out = tmp_path / "forecast.csv"
    predict(predict_conf(f"model=runs:/{run_id}/model", f"input={csv}", f"output={out}"))
    expected = pd.read_csv(out)

    with model_server(run_id, store, free_tcp_port, tmp_path) as base:
        rows = json.loads(series.to_json(orient="split", index=False))
        status, answer = post(base, {"dataframe_split": rows})
        assert status == 200, answer
        served = pd.DataFrame(answer["predictions"])
        assert served.month.tolist() == expected.month.tolist()
        assert served.forecast.tolist() == pytest.approx(expected.forecast.tolist(), rel=1e-6)
        # Every window, as `windows=all` does, through MLflow's params.
        status, answer = post(base, {"dataframe_split": rows, "params": {"windows": "all"}})
        assert status == 200 and len(answer["predictions"]) == (len(series) - 12 - 3 + 1) * 3
        # A series without the target column: a 400 that names it, not a stack trace.
        short = {"dataframe_split": {"columns": ["month"], "data": [["2020-01-01"]]}}
        status, answer = post(base, short)
        assert status == 400 and "sales" in answer["message"]


@pytest.mark.slow
def test_served_text_model_takes_raw_strings(store, tmp_path, free_tcp_port):
    csv = tmp_path / "reviews.csv"
    reviews(csv)
    run_id = run_training(make_cfg(*text_overrides(csv)), tmp_path / "out").run_id
    import mlflow

    texts = ["a wonderful film", "Awful, boring and DULL!"]
    expected = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(texts)
    with model_server(run_id, store, free_tcp_port, tmp_path) as base:
        status, answer = post(base, {"inputs": texts})
        assert status == 200, answer
        served = pd.DataFrame(answer["predictions"])
        assert served.label.tolist() == expected.label.tolist()
        assert served.p_good.tolist() == pytest.approx(expected.p_good.tolist(), rel=1e-5)
        # A table with the training text column, as a file for pipeline.predict holds them.
        table = {"dataframe_split": {"columns": ["review"], "data": [[t] for t in texts]}}
        status, answer = post(base, table)
        assert status == 200, answer
        assert [row["label"] for row in answer["predictions"]] == expected.label.tolist()
