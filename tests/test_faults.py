"""Faults and bad input: resume after SIGTERM, divergence, concurrent runs, reproducibility,
and a battery of bad inputs that must fail cleanly and leave the store untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_cfg, run_cli, runs_in, sigterm_after

from pipeline.config import ConfigError
from pipeline.train import train
from pipeline.training.callbacks import DivergedError

SHORT = [
    "model.units=8",
    "trainer.limit_train_batches=3",
    "trainer.limit_eval_batches=1",
    "trainer.early_stopping_patience=null",
    "trainer.verbose=2",
    "tracking.system_metrics=false",
]


def history_steps(uri, run_id, key="val_loss"):
    import mlflow

    return [m.step for m in mlflow.MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.mark.slow
def test_sigterm_then_resume_continues_the_same_run(store, tmp_path):
    args = [*SHORT, "trainer.epochs=6"]
    killed = sigterm_after(args, tmp_path, "Epoch 4/6")  # three epochs done
    assert killed.returncode != 0
    [run] = runs_in(store)
    run_id = run.info.run_id
    assert run.info.status == "KILLED"
    assert f"resume={run_id}" in killed.stderr  # the console says how to resume
    backup = Path(run.data.tags["backup_dir"])
    assert (backup / "state.json").is_file()

    # A changed config is refused before anything runs (in-process: the same check as the CLI's).
    with pytest.raises(ConfigError, match=r"model\.units: run has '8', now 9"):
        train(make_cfg(*args, "model.units=9", f"resume={run_id}"), tmp_path / "refused")

    resumed = run_cli(*args, f"resume={run_id}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.metrics["epochs_trained"] == 6
    steps = history_steps(store, run_id)
    assert steps == list(range(6))  # no gap, no duplicate
    assert not backup.exists()  # a finished run needs no backup


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_marked_failed_by_the_next_run(store, tmp_path):
    import signal

    killed = sigterm_after([*SHORT, "trainer.epochs=50"], tmp_path, "Epoch 3/50", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    [run] = runs_in(store)
    assert run.info.status == "RUNNING"  # nothing could close it: the process just vanished
    pid = run.data.tags["process.pid"]

    train(make_cfg("trainer=smoke", "model.units=8", "tracking.log_model=false"), tmp_path / "b")
    runs = {r.info.run_id: r for r in runs_in(store)}
    dead = runs[run.info.run_id]
    assert dead.info.status == "FAILED"
    assert f"pid {pid}" in dead.data.tags["status_reason"]
    assert "ended without closing the run" in dead.data.tags["status_reason"]
    assert [r.info.status for r in runs.values() if r.info.run_id != run.info.run_id] == [
        "FINISHED"
    ]


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_nan_loss_fails_the_run_with_a_reason(store, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("t,value\n" + "".join(f"{i},{1e30 * (i % 7)}\n" for i in range(200)))
    cfg = make_cfg(
        "data=csv",
        f"data.path={path}",
        "data.target=value",
        "data.scale=false",
        *SHORT,
        "trainer.epochs=3",
    )
    with pytest.raises(DivergedError, match="diverged"):
        train(cfg, tmp_path / "out")
    [run] = runs_in(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "nan_loss at epoch 1"
    assert run.data.tags["error.type"] == "DivergedError"


@pytest.mark.slow
def test_concurrent_runs_all_recorded(tmp_path):
    """Four runs at once on one SQLite store, twice as many processes as CI's cores: every run's
    writes land (SQLite's lock retried), each in its own output folder."""
    count = 4
    db = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    logs = [tmp_path / f"run-{i}.log" for i in range(count)]
    procs = []
    for i, log in enumerate(logs):  # stderr to files: a full pipe would stall a run
        with open(log, "w") as handle:
            command = [
                sys.executable,
                "-m",
                "pipeline.train",
                *SHORT,
                "trainer.epochs=1",
                f"seed={i}",
            ]
            procs.append(
                subprocess.Popen(
                    command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=handle
                )
            )
    codes = [p.wait(timeout=900) for p in procs]
    assert codes == [0] * count, "\n".join(log.read_text()[-1500:] for log in logs)
    runs = runs_in(f"sqlite:///{db}")
    assert len(runs) == count and {r.info.status for r in runs} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in runs)
    assert sorted(r.data.params["seed"] for r in runs) == [str(i) for i in range(count)]
    assert len(list((tmp_path / "outputs").glob("*/*"))) == count  # distinct run folders


@pytest.mark.slow  # 10-15 s of training: out of the fast tier
def test_deterministic_runs_are_identical(store, tmp_path):
    import keras

    overrides = [*SHORT, "trainer.epochs=2", "trainer.deterministic=true"]
    first = train(make_cfg(*overrides), tmp_path / "a")
    second = train(make_cfg(*overrides), tmp_path / "b")
    for key in ("test_accuracy", "test_loss", "val_loss"):
        assert first[key] == second[key]
    a = keras.saving.load_model(tmp_path / "a" / "model.keras").get_weights()
    b = keras.saving.load_model(tmp_path / "b" / "model.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert {r.data.tags["deterministic"] for r in runs_in(store)} == {"true"}


HEADER, ROWS = "t,value\n", "".join(f"{i},{i}\n" for i in range(10))
FILES = {
    "empty.csv": "",
    "text.csv": HEADER + "0,1\n1,x\n",
    "nan.csv": HEADER + "0,1\n1,\n2,3\n",
    "short.csv": HEADER + ROWS,
    "plain-file.csv": "",
    "bad_TRAIN.ts": "@problemName X\n@classLabel true a b\n@data\n1,x,2:a\n",
    "bad_TEST.ts": "@problemName X\n@classLabel true a b\n@data\n1,2:a\n",
    "inf.csv": HEADER + "".join(f"{i},{'inf' if i == 30 else i}\n" for i in range(60)),
    "gap.csv": HEADER + "".join(f"2020-{m:02d}-01,{m}\n" for m in (1, 2, 3, 4, 6, 7, 8, 9)),
}


def bad_inputs(tmp: Path):
    """(command-line args, the message's key phrase) for each bad input."""
    csv = ["data=csv", "data.target=value"]
    return [
        (["modle=lstm"], "Unknown config key `modle`. Did you mean `model`?"),
        (["+modle=lstm"], "Unknown config key `modle`. Did you mean `model`?"),
        (["+model.unitz=8"], "Unknown config key `model.unitz`. Did you mean `units`?"),
        (["+data.batchsize=8"], "Unknown config key `data.batchsize`"),
        (["++trainer.epoch=3"], "Unknown config key `trainer.epoch`"),
        (["model.unitz=8"], "Unknown config key `model.unitz`"),
        (["data.batchsize=8"], "Unknown config key `data.batchsize`"),
        (["trainer.epoch=3"], "Unknown config key `trainer.epoch`"),
        (["tracking.urii=x"], "Unknown config key `tracking.urii`"),
        (["model.units=abc"], "`model.units`: expected an integer, got 'abc'"),
        (["trainer.epochs=1.5"], "`trainer.epochs`: expected an integer"),
        (["model.bidirectional=maybe"], "`model.bidirectional`: expected true or false"),
        (["model.units=-3"], "`model.units`: expected a positive integer, got -3"),
        (["model.num_layers=0"], "`model.num_layers`: expected a positive integer"),
        (["model.dropout=1.5"], "`model.dropout`: expected a number in [0, 1)"),
        (["trainer.learning_rate=-1"], "`trainer.learning_rate`: expected a number in (0, 10]"),
        (["data.batch_size=0"], "`data.batch_size`: expected a positive integer"),
        (["trainer.epochs=0"], "`trainer.epochs`: expected a positive integer"),
        (["data=sine", "data.window=5000"], "too few for `data.window=5000`"),
        (["model=transformer"], "Unknown option `transformer` for the config group `model`"),
        (["data=imagenet"], "Unknown option `imagenet` for the config group `data`"),
        ([*csv, "data.path=/nonexistent/series.csv"], "does not exist"),
        ([*csv, f"data.path={tmp / 'empty.csv'}"], "is empty"),
        ([*csv, f"data.path={tmp / 'text.csv'}"], "non-numeric"),
        ([*csv, f"data.path={tmp / 'nan.csv'}"], "missing value"),
        ([*csv, f"data.path={tmp / 'inf.csv'}"], "infinite value"),
        ([*csv, f"data.path={tmp / 'short.csv'}"], "too few"),
        (["data=csv", "data.target=price", f"data.path={tmp / 'short.csv'}"], "not found"),
        ([*csv, "data.time=t", f"data.path={tmp / 'gap.csv'}"], "not evenly spaced"),
        (
            [*csv, "data.time=t", f"data.path={tmp / 'short.csv'}"],
            "holds values that are not dates",
        ),
        (["data=airline", "data.level=trend"], "`data.level`"),
        (["data=mnist", f"data.data_dir={tmp}", "data.download=false"], "`data=mnist1d`"),
        (["tracking.uri=http://127.0.0.1:9"], "Cannot reach the MLflow tracking server"),
        ([f"tracking.uri=sqlite:///{tmp / 'plain-file.csv'}/mlflow.db"], "is not writable"),
        (["resume=0123456789abcdef"], "names no run"),
        (["data=uea", "data.name=NoSuchData"], "not one of the UEA/UCR datasets aeon ships"),
        (["data=uea", f"data.path={tmp / 'bad_TRAIN.ts'}"], "could not be read"),
    ]


BATTERY = bad_inputs(Path("TMP"))  # for the test ids; each test builds its own in tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BATTERY)), ids=[" ".join(a) for a, _ in BATTERY])
def test_bad_input_fails_cleanly_and_leaves_store_unchanged(tmp_path, index):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    args, message = bad_inputs(tmp_path)[index]
    db = tmp_path / "store" / "mlflow.db"
    result = run_cli(*args, env_extra={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}, cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not db.exists() and not (tmp_path / "outputs").exists()
